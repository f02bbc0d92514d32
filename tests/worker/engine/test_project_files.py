"""Experiment files in nn-experiments' style, kept in the stand-in checkout: each previews and
trains (its first run, in this process), or fails where and as FORMAT.md says it does."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from shared.project import project_at
from shared.sweepfile import SpecError, parse_sweep
from shared.sweepfile.run_config import RunConfig
from tests.worker.engine.support import Recorder
from worker import project
from worker.engine.project_trainer import engine_for

PROJECT = Path(__file__).resolve().parents[2] / "support" / "nnexp_project"
FILES = sorted(p.relative_to(PROJECT).as_posix() for p in PROJECT.glob("experiments/**/*.yml"))

# Files that do not train, and why: the rest preview and train.
REFUSED_AT_PREVIEW = {
    # sweeps' own TrainAutoencoder keeps its name and does not take the special trainers' keys
    "experiments/ae/ae-special.yml": "unknown key 'feature_loss_weight'",
}
FAILED_ON_THE_WORKER = {
    # the trainer does not take the key: nn-experiments would fail the same way
    "experiments/denoise/denoise-mask.yml": "does not take 'mask_is_arg'",
    # its module cannot be imported on this machine (a missing package)
    "experiments/img2img/extra-net.yml": "name 'ExtraNet' is not defined (project modules that "
    "failed to import on this worker: src.models.extra",
}


@pytest.fixture
def loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(project, "_loaded", None)
    monkeypatch.setattr(sys, "path", list(sys.path))
    project.load(PROJECT)


def test_the_files_are_there() -> None:
    assert len(FILES) == 8


@pytest.mark.parametrize("name", FILES)
def test_file_previews_and_trains(name: str, loaded: None, tmp_path: Path) -> None:
    text = (PROJECT / name).read_text()
    if name in REFUSED_AT_PREVIEW:
        with pytest.raises(SpecError, match=REFUSED_AT_PREVIEW[name]):
            parse_sweep(text, project=project_at(PROJECT))
        return
    runs = parse_sweep(text, project=project_at(PROJECT)).runs
    assert runs
    if name in FAILED_ON_THE_WORKER:
        with pytest.raises(Exception) as failure:
            train, config = engine_for(RunConfig.from_config(runs[0].config, own_schedulers=True))
            train(config, Recorder(), checkpoint_dir=tmp_path, device="cpu")
        assert FAILED_ON_THE_WORKER[name] in str(failure.value)
        return
    train, config = engine_for(RunConfig.from_config(runs[0].config, own_schedulers=True))
    recorder = Recorder()
    summary = train(config, recorder, checkpoint_dir=tmp_path, device="cpu")
    assert summary["inputs"] >= runs[0].config["max_inputs"]
    assert recorder.steps("validation_loss")
