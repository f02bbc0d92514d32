"""The project adapter in this process: names, constructor checks, ${PATH}, `load`, resume."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from shared.project import project_at
from shared.sweepfile import parse_sweep
from shared.sweepfile.run_config import RunConfig
from worker import project
from worker.engine.export import read_model_file
from worker.engine.namespace import build_namespace, run_code
from worker.engine.project_trainer import constructor_keys, engine_for

PROJECT = Path(__file__).resolve().parents[2] / "support" / "nnexp_project"

FILE = """\
experiment_name: denoise/tiny
trainer: experiments.denoise.trainer.TrainDenoising
train_set: |
  blob_images(64, seed=1)
validation_set: |
  blob_images(32, seed=2)
model: |
  EncoderConv2d(1, 1, width=2)
batch_size: 16
learnrate: 0.01
optimizer: AdamW
scheduler: CosineAnnealingWarmupLR
loss_function: l2
max_inputs: 128
num_train_loss_steps: 32
noise_amount: 0.1
seed: 3
"""


@pytest.fixture
def loaded(monkeypatch: pytest.MonkeyPatch) -> project.Loaded:
    """The stand-in checkout loaded into this process, unloaded afterwards."""
    monkeypatch.setattr(project, "_loaded", None)
    monkeypatch.setattr(sys, "path", list(sys.path))
    result = project.load(PROJECT)
    assert result is not None
    return result


def config_of(text: str) -> dict[str, Any]:
    return parse_sweep(text, project=project_at(PROJECT)).runs[0].config


def typed(config: dict[str, Any]) -> RunConfig:
    """As the task types a stored configuration on a worker with a project."""
    return RunConfig.from_config(config, own_schedulers=True)


def typed_of(text: str) -> RunConfig:
    return typed(config_of(text))


def test_the_loader_names_win_over_the_built_ins(loaded: project.Loaded) -> None:
    ns = build_namespace()
    assert ns["EncoderConv2d"].__module__ == "src.models.encoder"
    assert run_code("ds = blob_images(4)\n", ns, where="train_set").tensors[0].shape == (4, 1, 8, 8)
    assert loaded.failures == {
        "src.models.extra": "ModuleNotFoundError: No module named "
        "'sweeps_standin_missing_dependency'"
    }
    note = r"\(project modules that failed to import on this worker: src.models.extra \(Module"
    with pytest.raises(NameError, match=r"'ExtraNet' is not defined " + note):
        run_code("ExtraNet()\n", ns, where="model")


def test_the_constructor_is_checked_through_its_kwargs_chain(loaded: project.Loaded) -> None:
    keys = constructor_keys(project.resolve_trainer("experiments.denoise.trainer.TrainDenoising"))
    assert keys is not None and {"noise_amount", "gradient_clipping", "max_inputs"} <= keys
    with pytest.raises(ValueError, match=r"does not take 'noise_amout', 'extra_key' \("):
        engine_for(typed_of(FILE.replace("noise_amount", "noise_amout") + "extra_key: 1\n"))
    with pytest.raises(ValueError, match="module 'experiments.nope' cannot be imported"):
        engine_for(typed({**config_of(FILE), "trainer": "experiments.nope.Trainer"}))


def test_path_is_the_workers_checkout(loaded: project.Loaded) -> None:
    _, config = engine_for(typed_of(FILE + "globals:\n  TEXT: open('${PATH}/README.md').read()\n"))
    assert config.values["globals"]["TEXT"] == f"open('{PROJECT.resolve()}/README.md').read()"


def test_trains_resumes_and_loads_weights(loaded: project.Loaded, tmp_path: Path) -> None:
    events: list[tuple[str, dict]] = []
    train, config = engine_for(typed_of(FILE))
    summary = train(config, lambda e, **p: events.append((e, p)), checkpoint_dir=tmp_path / "a")
    assert summary["inputs"] == 128 and summary["seed"] == 3
    points = [pt for e, p in events if e == "metrics" for pt in p["points"]]
    assert [s for k, s, _ in points if k == "train_loss"] == list(range(32, 129, 32))
    assert {"validation_loss", "learnrate_1", "model_params", "throughput"} <= {
        k for k, *_ in points
    }
    assert (tmp_path / "a" / "checkpoints" / "snapshot.pt").is_file()
    model_file = read_model_file(tmp_path / "a" / "model.pt")  # for `sweeps pull`
    assert model_file["config"]["trainer"] == "experiments.denoise.trainer.TrainDenoising"
    (log,) = (tmp_path / "a" / "tensorboard").iterdir()  # the run's own TensorBoard log
    assert log.name.startswith("events.out.tfevents.") and log.stat().st_size > 100
    # the same run again from its stored checkpoint: it resumes where it ended, replaying points
    events.clear()
    train(config, lambda e, **p: events.append((e, p)), checkpoint_dir=tmp_path / "a")
    assert [e for e, _ in events].count("replay") == 1
    # `load`: another run starts from those weights (a learning rate of 1e-30 keeps them)
    best = torch.load(tmp_path / "a" / "checkpoints" / "best.pt", weights_only=False)
    text = FILE.replace("learnrate: 0.01", "learnrate: 1.0e-30")
    text = text.replace("scheduler: CosineAnnealingWarmupLR\n", "")
    train, config = engine_for(typed_of(text + f"load: {tmp_path}/a/checkpoints\n"))
    trained: dict[str, Any] = {}
    train(config, lambda e, **p: trained.update(p), checkpoint_dir=tmp_path / "b")
    final = torch.load(tmp_path / "b" / "checkpoints" / "snapshot.pt", weights_only=False)
    for key, value in best["state_dict"].items():
        assert torch.equal(final["state_dict"][key], value)
