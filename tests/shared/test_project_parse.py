"""Sweep files for a user's checkout, checked where nothing is imported (API, CLI preview)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.plugins import parse_options
from shared.project import Project, project_at
from shared.settings import Settings
from shared.sweepfile import SpecError, parse_sweep

PROJECT = Path(__file__).resolve().parents[1] / "support" / "nnexp_project"

FILE = """\
matrix:
  amt: [0.1, 0.2]
experiment_name: denoise/${matrix_slug}
trainer: experiments.denoise.trainer.TrainDenoising
train_set: |
  ds = blob_images(64)
model: |
  EncoderConv2d(1, 1)
batch_size: 8
learnrate: 0.01
optimizer: AdamW
scheduler: CosineAnnealingWarmupLR
max_inputs: 64
noise_amount: ${amt}
mask_is_arg: true
load: ${PATH}/checkpoints/earlier
"""


@pytest.fixture
def project() -> Project:
    found = project_at(PROJECT)
    assert found is not None
    return found


def error_of(text: str, project: Project | None) -> SpecError:
    with pytest.raises(SpecError) as err:
        parse_sweep(text, project=project)
    return err.value


def test_a_project_trainer_takes_keys_and_names_only_the_worker_can_check(
    project: Project,
) -> None:
    runs = parse_sweep(FILE, project=project).runs
    assert [r.config["noise_amount"] for r in runs] == [0.1, 0.2]
    assert runs[0].config["mask_is_arg"] is True
    # ${PATH} is the worker's checkout: kept for it to fill in, and out of the hash's way
    assert runs[0].config["load"] == "${PATH}/checkpoints/earlier"
    assert runs[0].settings.scheduler == "CosineAnnealingWarmupLR"


def test_without_a_project_the_same_file_is_refused() -> None:
    err = error_of(FILE, None)
    assert "${PATH} stands for your project's root: set SWEEPS_PROJECT_ROOT" in err.message
    err = error_of(FILE.replace("load: ${PATH}/checkpoints/earlier\n", ""), None)
    assert err.key == "trainer" and "is not supported" in err.message
    # A project's dotted name: the fix is the project root, not a look-alike built-in.
    assert "set SWEEPS_PROJECT_ROOT" in err.message and "did you mean" not in err.message


def test_a_built_in_trainer_name_the_checkout_defines_is_the_checkouts(project: Project) -> None:
    text = FILE.replace("load: ${PATH}/checkpoints/earlier\n", "")
    for name in ("Trainer", "TrainAutoencoder", "src.train.TrainAutoencoder"):
        runs = parse_sweep(text.replace("experiments.denoise.trainer.TrainDenoising", name),
                           project=project).runs  # fmt: skip
        assert runs[0].config["noise_amount"] == 0.1  # left for the worker's constructor check
    # no `trainer`: nn-experiments' loader takes its `Trainer`, the checkout's here
    runs = parse_sweep(text.replace("trainer: experiments.denoise.trainer.TrainDenoising\n", ""),
                       project=project).runs  # fmt: skip
    assert runs[0].config["mask_is_arg"] is True


def test_sweeps_own_trainers_still_refuse_unknown_keys(project: Project) -> None:
    text = FILE.replace("scheduler: CosineAnnealingWarmupLR\n", "")
    for name in ("RepresentationClassTrainer", "experiments.reptrainer.RepresentationClassTrainer"):
        err = error_of(text.replace("experiments.denoise.trainer.TrainDenoising", name), project)
        assert err.key == "noise_amount"
        assert err.message == (
            f"unknown key 'noise_amount': the trainer {name!r} is sweeps' built-in (the project "
            f"{PROJECT} does not define it), which takes only the keys of FORMAT.md"
        )


def test_trainers_and_schedulers_the_checkout_does_not_have_are_refused(
    project: Project,
) -> None:
    err = error_of(FILE.replace("trainer.TrainDenoising", "trainer.TrainDenoisin"), project)
    assert err.key == "trainer" and err.line == 4
    assert err.message == (
        "trainer 'experiments.denoise.trainer.TrainDenoisin': experiments/denoise/trainer.py "
        "in the project defines no 'TrainDenoisin'; did you mean 'TrainDenoising'?"
    )
    err = error_of(FILE.replace("denoise.trainer.", "nope.trainer."), project)
    assert "has no module 'experiments.nope.trainer'" in err.message
    err = error_of(FILE.replace("CosineAnnealingWarmupLR", "CosineWarmupLR"), project)
    assert err.key == "scheduler"
    assert "src/scheduler.py in the project defines no 'CosineWarmupLR'" in err.message
    assert "did you mean 'CosineAnnealingWarmupLR'?" in err.message


def test_scalar_keys_as_code_where_the_service_need_not_plan_with_them(
    project: Project,
) -> None:
    run = parse_sweep(FILE + "seed: |\n  40 + 2\n", project=project).runs[0]
    assert run.config["seed"] == "40 + 2\n" and run.settings.seed is None
    err = error_of(FILE.replace("batch_size: 8", "batch_size: |\n  4 * 2"), project)
    assert err.key == "batch_size" and "must be an integer" in err.message


def test_a_matrix_key_named_path_is_substituted(project: Project) -> None:
    text = FILE.replace("amt: [0.1, 0.2]", "amt: [0.1]\n  PATH: [here]")
    assert parse_sweep(text, project=project).runs[0].config["load"] == "here/checkpoints/earlier"


def test_a_project_root_that_is_no_folder_is_an_error_at_preview_and_submit(
    tmp_path: Path,
) -> None:
    (tmp_path / "file").write_text("")
    for root, state in ((tmp_path / "missing", "does not exist"), (tmp_path / "file", "is not")):
        with pytest.raises(SpecError, match=f"SWEEPS_PROJECT_ROOT={root} {state}"):
            parse_options(Settings(project_root=root))


def test_the_loader_names_come_from_the_checkouts_loader(project: Project, tmp_path: Path) -> None:
    modules = [i.module for i in project.loader_imports]
    assert modules[-5:] == [
        "src.train", "src.datasets", "src.models.encoder", "src.models.extra",
        "experiments.datasets",
    ]  # fmt: skip
    assert "from src.train import *" in [i.statement for i in project.loader_imports]
    # a checkout without a loader file: the modules the original imports, where they exist
    (tmp_path / "src" / "train").mkdir(parents=True)
    (tmp_path / "src" / "train" / "__init__.py").write_text("")
    (tmp_path / "src" / "datasets.py").write_text("")
    bare = Project(tmp_path)
    assert [i.module for i in bare.loader_imports] == ["src.train", "src.datasets"]
