"""model.pt: a run that finishes leaves its trained model, which load_model rebuilds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from shared.sweepfile.run_config import RunConfig
from tests.worker.engine.support import Recorder, tiny_config
from worker.engine import RunCancelled, load_model, read_model_file, train_run
from worker.engine.build import build_model

CONFIG = tiny_config(max_inputs=512)
RUN = RunConfig.from_config(CONFIG)


def test_a_finished_run_leaves_a_model_that_rebuilds(tmp_path: Path) -> None:
    train_run(RUN, report=Recorder(), checkpoint_dir=tmp_path, device="cpu")
    saved = read_model_file(tmp_path / "model.pt")  # weights_only: plain tensors and values
    assert saved["config"] == CONFIG
    latest = torch.load(tmp_path / "latest.pt", weights_only=False)
    assert saved["state_dict"].keys() == latest["model"].keys()

    model = load_model(tmp_path / "model.pt")
    trained, _ = build_model(CONFIG)
    trained.load_state_dict(latest["model"])  # the final checkpoint's weights
    fixed = torch.linspace(-1, 1, 4 * 64).reshape(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(fixed), trained.eval()(fixed))
    assert not model.training


def test_a_cancelled_run_leaves_no_model(tmp_path: Path) -> None:
    with pytest.raises(RunCancelled):
        train_run(RUN, report=Recorder(), checkpoint_dir=tmp_path, device="cpu",
                  should_stop=lambda: True)  # fmt: skip
    assert not (tmp_path / "model.pt").exists()


def test_another_file_is_refused(tmp_path: Path) -> None:
    torch.save({"model": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="is not a model file of sweeps"):
        read_model_file(tmp_path / "other.pt")
