"""nn-experiments' gradient_clipping, gradient_accumulation, dataloader_collate_fn and load on
sweeps' own trainers (train_run)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from shared.sweepfile import SpecError, parse_sweep
from shared.sweepfile.run_config import RunConfig
from tests.worker.engine.support import Recorder, tiny_config
from worker.engine import train_run

# The model keeps a copy of its last layer's weights at every training forward.
RECORDING_MODEL = """
class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(64, CLASSES)

    def forward(self, x):
        if self.training:
            WEIGHTS.append(self.linear.weight.detach().clone())
        return self.linear(x.flatten(1))

Tiny()
"""


def weights_seen(**overrides: object) -> list[torch.Tensor]:
    weights: list[torch.Tensor] = []
    config = tiny_config(
        trainer="Trainer", model=RECORDING_MODEL, optimizer="SGD", learnrate=1.0,
        globals={**tiny_config()["globals"], "WEIGHTS": weights}, **overrides,
    )  # fmt: skip
    train_run(RunConfig.from_config(config), report=Recorder(), device="cpu")
    return weights


def test_gradient_accumulation_steps_the_optimizer_every_n_batches() -> None:
    weights = weights_seen(max_inputs=256, gradient_accumulation=4)  # 8 batches of 32
    changed = [not torch.equal(a, b) for a, b in zip(weights, weights[1:], strict=False)]
    assert changed == [False, False, False, True, False, False, False]


def test_gradient_clipping_bounds_each_gradient_value() -> None:
    weights = weights_seen(max_inputs=256, gradient_clipping=1e-3)
    steps = [float((b - a).abs().max()) for a, b in zip(weights, weights[1:], strict=False)]
    assert all(0 < step <= 1e-3 * (1 + 1e-4) for step in steps)
    unclipped = weights_seen(max_inputs=256)
    assert float((unclipped[1] - unclipped[0]).abs().max()) > 1e-2


def test_collate_fn_makes_the_batches() -> None:
    sizes: list[int] = []
    collate = (
        "def collate(items):\n"
        "    SIZES.append(len(items))\n"
        "    return torch.utils.data.default_collate(items)\n"
        "collate\n"
    )
    config = tiny_config(
        trainer="Trainer", max_inputs=64, dataloader_collate_fn=collate,
        globals={**tiny_config()["globals"], "SIZES": sizes},
    )  # fmt: skip
    summary = train_run(RunConfig.from_config(config), report=Recorder(), device="cpu")
    assert summary["inputs"] == 64
    assert sizes == [32, 32, 100]  # two training batches, then the validation set in one


def test_load_starts_from_a_checkpoints_weights(tmp_path: Path) -> None:
    start = {"linear.weight": torch.full((4, 64), 0.25), "linear.bias": torch.zeros(4)}
    torch.save({"state_dict": start}, tmp_path / "best.pt")  # nn-experiments' layout
    weights = weights_seen(max_inputs=32, load=str(tmp_path))
    assert torch.equal(weights[0], start["linear.weight"])


def test_the_keys_are_checked_at_submit() -> None:
    base = (
        "experiment_name: x\nmodel: |\n  nn.Linear(4, 2)\ntrain_set: |\n  ds = 1\n"
        "batch_size: 4\nlearnrate: 0.1\noptimizer: SGD\nmax_inputs: 64\n"
    )
    for extra, message in (
        ("gradient_clipping: -1", "'gradient_clipping' must be a positive number"),
        ("gradient_accumulation: 0", "'gradient_accumulation' must be an integer >= 1"),
        ("dataloader_collate_fn: my_collate", "'dataloader_collate_fn' must be code"),
        ("step_graph: true\ngradient_clipping: 1", "not supported with 'step_graph'"),
        ("compile: true\ngradient_accumulation: 2", "not supported with 'compile'"),
    ):
        with pytest.raises(SpecError, match=message):
            parse_sweep(base + extra + "\n")
