"""What the training loop carries: its counters (saved in every checkpoint), the run's fixed
context, the loop's moving parts, and every point reported."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import torch

from . import checkpoint as ckpt
from .evaluate import EvalBatches
from .phases import Phases
from .step import EagerStep, GraphStep

Report = Callable[..., None]


@dataclass
class Progress:
    """Loop counters; saved in every checkpoint."""

    inputs: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    last_validation: int = -1
    next_inputs_validation: int | None = None
    train_seconds: float = 0.0
    stretch_loss: float = 0.0
    stretch_batches: int = 0
    stretch_inputs: int = 0


@dataclass
class Context:
    """What the loop's steps need from the build; fixed for the whole run."""

    run: Any
    trainer: Any  # trainer.Trainer, or a plugin's subclass
    device: torch.device
    folder: ckpt.Folder | None  # local or object storage (checkpoint.py)
    report: Report
    autocast: Callable[[], AbstractContextManager]
    val_batches: EvalBatches | None  # None without a validation_set: train curves only
    heldout: EvalBatches | None
    params: int
    phases: Phases  # where the time goes, reported as the "phases" event at the end


@dataclass
class Loop:
    """The loop's moving parts; not saved (a resume rebuilds them)."""

    step: EagerStep | GraphStep
    order: torch.Tensor | None  # the epoch's batch order
    steps: int = 0  # steps taken by this attempt
    clock: float = field(default_factory=time.perf_counter)  # the training clock's last start
    last_flush: float = field(default_factory=time.monotonic)


@dataclass
class Reported:
    """Every point reported: kept for the summary and, in each checkpoint, for replay (`report`
    may store points after a checkpoint is written, so an attempt that dies in between would
    otherwise lose the points up to its checkpoint for good)."""

    history: list[tuple[str, int, float]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)  # the latest value of each metric
    last_step: dict[str, int] = field(default_factory=dict)
    # train-loss stretches not yet read from the device: (step, device mean, learning rate)
    pending: list[tuple[int, torch.Tensor, float]] = field(default_factory=list)


def emit(ctx: Context, out: Reported, points: list, event: str = "metrics") -> None:
    if points:
        ctx.report(event, points=points)
        out.history.extend(points)
        for key, step, value in points:
            if step >= out.last_step.get(key, -1):
                out.summary[key], out.last_step[key] = value, step
