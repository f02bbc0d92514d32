"""`step_graph: true`: the whole step on static buffers. On a CPU the same step function runs
eagerly, so these check its logic against the plain step; the capture itself is checked on CUDA
(test_engine_gpu.py, run by bench/gpu.sh)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shared.sweepfile.run_config import RunConfig
from tests.worker.engine.support import Recorder, tiny_config
from worker.engine import train_run

PER_SAMPLE = "[\n    TrivialAugmentWidePerSample(),\n]"


def _config(**overrides: Any) -> dict[str, Any]:
    # 80 images at batch 32: every epoch ends on a partial batch of 16 (run eagerly).
    globals_ = {**tiny_config()["globals"], "N_TRAIN": 80}
    base = dict(globals=globals_, max_inputs=2400, scheduler="CosineAnnealingLR",
                num_inputs_between_validations=600, train_input_transforms=PER_SAMPLE)  # fmt: skip
    return tiny_config(**{**base, **overrides})


def _series(config: dict[str, Any], **kwargs: Any) -> tuple[dict, dict]:
    recorder = Recorder()
    summary = train_run(RunConfig.from_config(config), report=recorder, device="cpu", **kwargs)
    return summary, recorder.series()


def test_static_buffer_steps_match_the_plain_steps() -> None:
    plain_summary, plain = _series(_config())
    graph_summary, graph = _series(_config(step_graph=True))
    assert graph_summary["inputs"] == plain_summary["inputs"] == 2400
    for key in ("train_loss", "learnrate", "validation_loss", "accuracy_argmax"):
        assert graph[key].keys() == plain[key].keys(), key
        for step, value in plain[key].items():
            assert graph[key][step] == pytest.approx(value, rel=1e-5, abs=1e-7), (key, step)
    # the schedule really moved, and the losses are not all one value
    assert len(set(graph["learnrate"].values())) > 1
    assert len(set(graph["validation_loss"].values())) > 3


def test_step_graph_crash_and_resume_repeat_the_uninterrupted_run(tmp_path: Path) -> None:
    config = _config(step_graph=True)
    _, whole = _series(config)
    crash_at = sorted(whole["validation_loss"])[1]  # the second validation
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_run(
            RunConfig.from_config(config),
            report=Recorder(fail_at=("validation_loss", crash_at)),
            checkpoint_dir=tmp_path,
            device="cpu",
        )
    resumed = Recorder()
    train_run(RunConfig.from_config(config), report=resumed, checkpoint_dir=tmp_path, device="cpu")
    after = resumed.series()
    assert min(resumed.steps("validation_loss")) == crash_at
    for key in ("train_loss", "learnrate", "validation_loss"):
        for step, value in after[key].items():
            assert value == pytest.approx(whole[key][step], rel=1e-5, abs=1e-7), (key, step)


def test_step_graph_names_an_optimizer_it_cannot_capture() -> None:
    with pytest.raises(ValueError, match="'step_graph' needs an optimizer .*'SGD'"):
        train_run(
            RunConfig.from_config(_config(step_graph=True, optimizer="SGD")),
            report=Recorder(),
            device="cpu",
        )


def test_step_graph_needs_a_tensor_dataset() -> None:
    listed = "[(torch.rand(1, 8, 8), torch.zeros(4)) for _ in range(40)]"
    with pytest.raises(ValueError, match="'step_graph' needs a train_set of tensors"):
        train_run(
            RunConfig.from_config(
                _config(step_graph=True, train_set=listed, validation_set=listed)
            ),
            report=Recorder(),
            device="cpu",
        )
