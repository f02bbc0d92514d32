"""Example files build the seed table's models; shared/sweepfile/names.py names exist in torch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from shared.sweepfile import names, parse_sweep
from shared.sweepfile.run_config import RunConfig
from worker.engine import inspect_sweep
from worker.engine.losses import make_loss

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
# Trainable parameters from the seed write-up's table, by (layer, head, hidden, mlp, cs).
VIT_ROWS = {
    (4, 16, 256, 512, 128): 2_185_610,
    (4, 8, 256, 512, 128): 2_185_610,
    (4, 32, 256, 512, 128): 2_185_610,
    (8, 8, 256, 512, 128): 4_294_026,
    (8, 16, 256, 512, 128): 4_294_026,
    (8, 16, 256, 512, 784): 4_469_178,
    (8, 8, 256, 1024, 128): 6_395_274,
    (4, 4, 256, 512, 128): 2_185_610,
    (16, 8, 256, 512, 128): 8_510_858,
    (8, 12, 768, 512, 128): 25_453_962,
}


def test_vit_example_has_the_ten_table_rows_with_their_parameter_counts() -> None:
    text = (EXAMPLES / "fmnist_vit.yaml").read_text()
    runs = parse_sweep(text).runs
    rows = inspect_sweep(text)
    assert len(rows) == 10
    found = {}
    for run, row in zip(runs, rows, strict=True):
        p = run.params
        assert run.config["max_inputs"] == 2_000_000 and row["slug"] == run.slug
        found[(p["layer"], p["head"], p["hidden"], p["mlp"], p["cs"])] = row["params"]
        assert "VisionTransformer" in row["summary"]
    assert found == VIT_ROWS


@pytest.mark.parametrize(
    ("name", "params"),
    [("fmnist_rn18.yaml", 11_243_466), ("fmnist_cnn.yaml", 2_002_698),
     ("fmnist_vit_quick.yaml", 2_185_610)],
)  # fmt: skip
def test_other_examples_parameter_counts(name: str, params: int) -> None:
    rows = inspect_sweep((EXAMPLES / name).read_text())
    assert [row["params"] for row in rows] == [params]
    assert rows[0]["matrix_id"] == "1" and rows[0]["experiment_name"].startswith("aug/fmnist_")


def test_quick_example_is_the_7_4_16_row_for_one_epoch() -> None:
    (run,) = parse_sweep((EXAMPLES / "fmnist_vit_quick.yaml").read_text()).runs
    assert run.slug == "patch:7_layer:4_head:16_hidden:256_mlp:512_drop:0.0_cs:128"
    assert run.config["max_inputs"] == 60_000


def test_spec_names_exist_in_torch() -> None:
    for name in names.OPTIMIZERS:
        assert isinstance(getattr(torch.optim, name, None), type), name
    for name in names.SCHEDULERS:
        assert isinstance(getattr(torch.optim.lr_scheduler, name, None), type), name
    for name in names.LOSS_FUNCTIONS:
        assert callable(getattr(torch.nn.functional, name, None)), name
    for name in names.LOSS_CLASSES:
        assert issubclass(getattr(torch.nn, name), torch.nn.Module), name
    for alias in names.LOSS_ALIASES:
        assert isinstance(make_loss(alias), getattr(torch.nn, names.LOSS_ALIASES[alias])), alias


def test_spec_schedulers_take_a_length_as_second_argument() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    for name in names.SCHEDULERS:
        getattr(torch.optim.lr_scheduler, name)(optimizer, 10)


def test_augment_example_compares_torchvisions_and_the_per_image_augment() -> None:
    """Two runs of the 7/4/16 row over the full 2M inputs, fast switches on, one per augment."""
    from worker.engine import TrivialAugmentWideOnDevice, TrivialAugmentWidePerSample
    from worker.engine.build import build_run

    text = (EXAMPLES / "fmnist_vit_augment.yaml").read_text()
    runs = parse_sweep(text).runs
    assert [row["params"] for row in inspect_sweep(text)] == [2_185_610, 2_185_610]
    augments = []
    for run in runs:
        assert run.config["max_inputs"] == 2_000_000 and run.config["compile"] is True
        augments.append(
            type(build_run(RunConfig.from_config(run.config), torch.device("cpu")).transforms[1])
        )
    # under compile: true torchvision's augment runs as its device twin (same draw per batch)
    assert augments == [TrivialAugmentWideOnDevice, TrivialAugmentWidePerSample]


def test_spec_trainer_names_are_the_engines() -> None:
    from worker.engine.trainer import TRAINERS

    assert set(names.TRAINERS) == set(TRAINERS) == set(names.TRAINER_METRICS)
