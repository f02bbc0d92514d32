"""Crash-and-resume and cancel: a restarted run continues from latest.pt to the same end."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.sweepfile.run_config import RunConfig
from tests.worker.engine.support import Recorder, tiny_config
from worker.engine import RunCancelled, train_run

# 256 images per epoch at batch 32, validations every epoch and every 300 inputs.
CONFIG = tiny_config(max_inputs=2000, num_inputs_between_validations=300, scheduler="StepLR")
DETERMINISTIC = ("validation_loss", "accuracy_argmax", "accuracy_svc", "accuracy_svc_heldout",
                 "train_loss", "learnrate", "model_params")  # fmt: skip


def test_crash_and_resume_ends_at_the_same_inputs_with_no_duplicate_points(tmp_path: Path) -> None:
    reference = Recorder()
    expected = train_run(
        RunConfig.from_config(CONFIG),
        report=reference,
        checkpoint_dir=tmp_path / "ref",
        device="cpu",
    )

    # The report callback fails at the validation at 1536 inputs: the latest checkpoint is the
    # mid-epoch validation at 1504 (epoch 5, batch 7 of 8).
    crashed = Recorder(fail_at=("validation_loss", 1536))
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_run(
            RunConfig.from_config(CONFIG),
            report=crashed,
            checkpoint_dir=tmp_path / "run",
            device="cpu",
        )
    assert [c["inputs"] for c in crashed.of("checkpoint")][-1] == 1504

    resumed = Recorder()
    summary = train_run(
        RunConfig.from_config(CONFIG), report=resumed, checkpoint_dir=tmp_path / "run", device="cpu"
    )
    assert summary["inputs"] == expected["inputs"] == 2016

    # The resumed run reports nothing at or before its resume point (except SVC fits that were
    # still pending at the checkpoint) and nothing twice.
    resumed_points = [(k, s) for k, s, _ in resumed.points()]
    assert len(resumed_points) == len(set(resumed_points))
    early = [(k, s) for k, s in resumed_points if s <= 1504]
    assert all(k.startswith("accuracy_svc") for k, _ in early)
    assert min(resumed.steps("validation_loss")) == 1536

    # Together, the two attempts give exactly the uninterrupted run's points and values.
    combined: dict[tuple[str, int], float] = {}
    for key, step, value in crashed.points() + resumed.points():
        combined[(key, step)] = value
    ref = {(k, s): v for k, s, v in reference.points()}
    assert set(combined) == set(ref)
    for (key, step), value in ref.items():
        if key in DETERMINISTIC:
            assert combined[(key, step)] == pytest.approx(value, rel=1e-5), (key, step)


def test_cancel_raises_and_keeps_the_latest_checkpoint_for_resume(tmp_path: Path) -> None:
    polls = []

    def should_stop() -> bool:
        polls.append(1)
        return len(polls) >= 3  # polled every 10 steps: stops after 30 steps (960 inputs)

    recorder = Recorder()
    with pytest.raises(RunCancelled):
        train_run(
            RunConfig.from_config(CONFIG),
            report=recorder,
            checkpoint_dir=tmp_path,
            device="cpu",
            should_stop=should_stop,
        )
    assert len(polls) == 3
    assert max(recorder.steps("validation_loss")) < 960
    assert (tmp_path / "latest.pt").is_file()
    last_checkpoint = recorder.of("checkpoint")[-1]["inputs"]

    resumed = Recorder()
    summary = train_run(
        RunConfig.from_config(CONFIG), report=resumed, checkpoint_dir=tmp_path, device="cpu"
    )
    assert summary["inputs"] == 2016
    assert min(resumed.steps("validation_loss")) > last_checkpoint
