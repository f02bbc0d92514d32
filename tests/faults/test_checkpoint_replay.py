"""A process that dies right after writing a checkpoint, before its points were stored.

The worker's reporter stores points from a background thread, a moment after the engine hands
them over; a checkpoint is durable at once. The engine therefore saves every point it reported
in the checkpoint and hands them back on resume (event "replay"), so the resumed attempt
stores what the dead one could not. In-process, with a report sink that loses everything not
yet "stored" when the process "dies" (the real-process version is in test_worker_killed.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shared.sweepfile import parse_sweep
from shared.sweepfile.run_config import RunConfig
from tests.faults.helpers import FINAL_INPUTS, VALIDATE_EVERY, sweep_yaml

pytestmark = pytest.mark.timeout(120)


class Died(Exception):
    pass


class LossySink:
    """Stores points only at the checkpoint *after* the one they precede; can die at one."""

    def __init__(self, die_at_checkpoint: int | None = None) -> None:
        self.die_at = die_at_checkpoint
        self.unstored: list[tuple[str, int, float]] = []
        self.stored: dict[tuple[str, int], float] = {}
        self.replayed: list[tuple[str, int, float]] = []

    def __call__(self, event: str, **payload: Any) -> None:
        if event == "replay":
            self.replayed += payload["points"]
        if event in ("metrics", "replay"):
            self.unstored += payload["points"]
        elif event == "checkpoint":
            if payload["inputs"] == self.die_at:
                raise Died  # SIGKILL after the checkpoint, before the flush
            self.flush()

    def flush(self) -> None:
        self.stored |= {(k, s): v for k, s, v in self.unstored}
        self.unstored = []


def test_points_before_a_checkpoint_survive_a_death_right_after_it(tmp_path: Path) -> None:
    import torch

    from worker.engine import train_run

    torch.set_num_threads(1)
    config = parse_sweep(sweep_yaml(seeds=(1,), sleep=0.0)).runs[0].config
    reference = LossySink()
    train_run(
        RunConfig.from_config(config),
        report=reference,
        checkpoint_dir=tmp_path / "ref",
        device="cpu",
    )
    reference.flush()

    dies = 2 * VALIDATE_EVERY
    first = LossySink(die_at_checkpoint=dies)
    with pytest.raises(Died):
        train_run(
            RunConfig.from_config(config),
            report=first,
            checkpoint_dir=tmp_path / "run",
            device="cpu",
        )
    lost = {(k, s) for k, s, _ in first.unstored}
    assert ("validation_loss", dies) in lost  # the dead attempt never stored its last points

    second = LossySink()
    summary = train_run(
        RunConfig.from_config(config), report=second, checkpoint_dir=tmp_path / "run", device="cpu"
    )
    second.flush()
    assert summary["inputs"] == FINAL_INPUTS
    # The resumed attempt handed back every point up to its checkpoint, the lost ones too...
    assert lost <= {(k, s) for k, s, _ in second.replayed}
    assert max(s for _, s, _ in second.replayed) == dies
    # ...so together the attempts stored exactly the uninterrupted run's points.
    assert set(first.stored) | set(second.stored) == set(reference.stored)
