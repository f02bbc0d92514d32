"""The training loop: `train_run`, a short loop over named steps (FORMAT.md).

Sections: build (device, run, trainer, data), state (fresh, or resumed from the latest
checkpoint), the loop (epochs of steps, with validations, polls and progress between them),
and the end (a last validation, the SVC probes). The reporting points are in validation.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

from shared.sweepfile.run_config import RunConfig
from worker import plugins

from . import checkpoint as ckpt
from . import datasets
from .autoencoder import AutoencoderTrainer
from .batches import TrainBatches
from .build import BuiltRun, build_run
from .evaluate import EVAL_BATCH_SIZE, EvalBatches, SvcPool, heldout_indices
from .models import count_trainable
from .phases import Phases
from .provenance import provenance
from .state import Context, Loop, Progress, Report, Reported, emit
from .step import EagerStep, GraphStep, make_forward_loss
from .validation import collect_svc, report_train_losses, resume, validation_point

TRAIN_LOSS_STRETCH = 1000  # train loss is the mean over each stretch of at least this many inputs
POLL_EVERY_STEPS = 10  # should_stop() is polled this often
FLUSH_EVERY_STEPS = 200  # pending train-loss points are read from the device (a sync) this often
# ...or after this many seconds, whichever comes first: on a CPU 200 steps of a ViT take minutes,
# and progress bars would sit still that long.
FLUSH_EVERY_SECONDS = 5.0
# torch.compile mode per device type; CUDA graphs where the shapes are fixed (full batches).
COMPILE_MODE = {"cuda": "reduce-overhead"}
ShouldStop = Callable[[], bool] | None


class RunCancelled(Exception):
    """should_stop() said so; the latest checkpoint stays for a later resume."""


class Trainer:
    """Trains on the configured loss and validates the loss. Plugin trainers subclass it."""

    representation = False

    def prepare(self, run: BuiltRun) -> BuiltRun:
        """The run as this trainer trains it (e.g. targets that are the inputs)."""
        return run


class RepresentationClassTrainer(Trainer):
    """Also reports argmax accuracy and SVC probes on the model's embedding at each validation."""

    representation = True


TRAINERS: dict[str, type[Trainer] | type[AutoencoderTrainer]] = {
    "Trainer": Trainer,
    "experiments.trainer.Trainer": Trainer,
    "RepresentationClassTrainer": RepresentationClassTrainer,
    "experiments.reptrainer.RepresentationClassTrainer": RepresentationClassTrainer,
    "TrainAutoencoder": AutoencoderTrainer,
    "src.train.TrainAutoencoder": AutoencoderTrainer,
    "src.train.train_autoencoder.TrainAutoencoder": AutoencoderTrainer,
}


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def make_step(ctx: Context, batches: TrainBatches) -> EagerStep | GraphStep:
    """The step the settings ask for (`compile`, `step_graph`; FORMAT.md)."""
    run, s, device = ctx.run, ctx.run.settings, ctx.device
    forward_loss = make_forward_loss(run, ctx.autocast)
    if s.step_graph:
        if batches.tensors is None:
            raise ValueError(
                "'step_graph' needs a train_set of tensors (a TensorDataset-like `.tensors`), "
                "so the batch can be gathered inside the graph"
            )
        if s.compile:
            # CUDA graphs come from the capture; compile only fuses the kernels inside it.
            forward_loss = torch.compile(forward_loss, dynamic=False)
        return GraphStep(run, forward_loss, batches.tensors)
    compiled = None
    if s.compile:
        # Fixed shapes: a final partial batch runs eagerly instead of recompiling each epoch.
        # The optimizer step stays eager, so a float learning rate cannot trigger a recompile.
        compiled = torch.compile(forward_loss, dynamic=False, mode=COMPILE_MODE.get(device.type))
    return EagerStep(run, forward_loss, compiled, mark_step=s.compile and device.type == "cuda")


def train_run(
    run_config: RunConfig,
    report: Report,
    checkpoint_dir: Path | str | None = None,
    device: str | torch.device | None = None,
    should_stop: ShouldStop = None,
    data_dir: Path | str | None = None,
) -> dict[str, Any]:
    """Train and evaluate one run as FORMAT.md describes; results leave only through `report`."""
    # ---- build: device, run, trainer, data
    phases = Phases()
    ctx, batches = build_context(run_config, report, resolve_device(device), checkpoint_dir,
                                 data_dir, phases)  # fmt: skip
    s = ctx.run.settings
    # ---- state: fresh, or resumed from the latest checkpoint
    svc, out = SvcPool(phases=phases), Reported()
    progress, loop = start_state(ctx, out, svc, batches)
    trained_before = progress.train_seconds
    try:
        # ---- the loop: epochs until max_inputs or max_epoch
        finished = False
        while not finished and (s.max_epoch is None or progress.epoch < s.max_epoch):
            finished = train_epoch(ctx, out, svc, progress, batches, loop, should_stop)
            end_epoch(ctx, out, svc, progress, batches, loop)
        # ---- the end: a last validation if the last epoch did not validate, then the SVCs
        if progress.last_validation != progress.inputs:
            validation_point(ctx, out, svc, progress, loop)
        report_train_losses(ctx, out, svc, progress)
        with phases.timed("svc_wait"):
            collect_svc(ctx, out, svc, wait=True)
        if ctx.folder is not None:
            with phases.timed("checkpoint"):
                ckpt.save_model(ctx.folder, ctx.run.model, dict(run_config.values))
    finally:
        svc.shutdown()
        phases.add("train", progress.train_seconds - trained_before)
        report("phases", phases=phases.as_dict())
    seed = ctx.run.seed
    return {**out.summary, "inputs": progress.inputs, "epoch": progress.epoch, "seed": seed}


def build_context(
    run_config: RunConfig,
    report: Report,
    device: torch.device,
    checkpoint_dir: Path | str | None,
    data_dir: Path | str | None,
    phases: Phases,
) -> tuple[Context, TrainBatches]:
    """The built run, its trainer and data, and the provenance event; timed as data and build."""
    folder = ckpt.as_folder(checkpoint_dir) if checkpoint_dir else None
    decoded_before, built = datasets.load_seconds(), time.perf_counter()
    run = build_run(run_config, device, data_dir)
    decoding = datasets.load_seconds() - decoded_before
    phases.add("data", decoding)
    phases.add("build", time.perf_counter() - built - decoding)
    data_started = time.perf_counter()
    s = run.settings
    # A name that is not built in comes from a plugin; resolved (or refused) before training.
    trainer = (TRAINERS.get(s.trainer) or plugins.trainer_class(s.trainer, Trainer))()
    run = trainer.prepare(run)
    report("provenance", info=provenance(dict(run_config.values), run.seed, device))
    batches = TrainBatches(run.train_set, s.batch_size, device, s.num_workers)
    eval_size = s.validation_batch_size or EVAL_BATCH_SIZE
    val_batches = None
    if run.validation_set is not None:
        val_batches = EvalBatches(
            run.validation_set, eval_size, device, freeze=s.freeze_validation_set,
            num_workers=s.num_workers,
        )  # fmt: skip
    heldout = None
    if trainer.representation and val_batches is not None:  # the probes score on validation
        heldout = EvalBatches(
            run.train_set, eval_size, device, indices=heldout_indices(len(run.train_set)),
            num_workers=s.num_workers, device_tensors=batches.tensors,
        )  # fmt: skip
    # One code path for fp32/bf16. A captured graph cannot use autocast's weight-cast cache.
    autocast = partial(torch.autocast, device.type, dtype=torch.bfloat16,
                       enabled=s.precision == "bf16", cache_enabled=not s.step_graph)  # fmt: skip
    ctx = Context(run, trainer, device, folder, report, autocast, val_batches, heldout,
                  count_trainable(run.model), phases)  # fmt: skip
    phases.add("data", time.perf_counter() - data_started)
    return ctx, batches


def start_state(
    ctx: Context, out: Reported, svc: SvcPool, batches: TrainBatches
) -> tuple[Progress, Loop]:
    """Fresh counters, or the latest checkpoint's (its points replayed); then the step."""
    with ctx.phases.timed("resume"):
        ckp, progress, order = resume(ctx, svc, batches)
    step = make_step(ctx, batches)  # after the resume: a graph captures the restored tensors
    step.loss_sum.fill_(progress.stretch_loss)
    if isinstance(step, GraphStep):
        step.sync_lr()
    if ckp is not None:
        emit(ctx, out, [(str(k), int(i), v) for k, i, v in ckp.get("points", [])], "replay")
    return progress, Loop(step, order)


def train_epoch(
    ctx: Context, out: Reported, svc: SvcPool, progress: Progress, batches: TrainBatches,
    loop: Loop, should_stop: ShouldStop,
) -> bool:  # fmt: skip
    """The rest of the current epoch, step by step; True once max_inputs is reached."""
    s = ctx.run.settings
    if progress.batch_in_epoch == 0 or loop.order is None:
        loop.order = batches.new_order()
    graph = isinstance(loop.step, GraphStep)
    for batch in batches.epoch(loop.order, progress.batch_in_epoch, indices=graph):
        train_step(ctx, out, progress, loop, batch)
        if s.max_inputs is not None and progress.inputs >= s.max_inputs:
            return True
        between_steps(ctx, out, svc, progress, loop, should_stop)
    return False


def train_step(ctx: Context, out: Reported, progress: Progress, loop: Loop, batch: Any) -> None:
    """One training step (its loss is added to step.loss_sum on the device), and the mean train
    loss of each stretch of >= TRAIN_LOSS_STRETCH inputs, read at the next report."""
    s = ctx.run.settings
    if loop.steps == 0 and (s.compile or s.step_graph):
        # The first call compiles or captures: shown apart (it is within `train`).
        with ctx.phases.timed("compile"):
            n = loop.step(batch)
    else:
        n = loop.step(batch)
    progress.inputs += n
    progress.batch_in_epoch += 1
    loop.steps += 1
    progress.stretch_batches += 1
    progress.stretch_inputs += n
    if progress.stretch_inputs >= TRAIN_LOSS_STRETCH:
        mean = loop.step.loss_sum / progress.stretch_batches
        out.pending.append((progress.inputs, mean, loop.step.lr()))
        loop.step.loss_sum.zero_()
        progress.stretch_batches = progress.stretch_inputs = 0


def between_steps(
    ctx: Context, out: Reported, svc: SvcPool, progress: Progress, loop: Loop,
    should_stop: ShouldStop,
) -> None:  # fmt: skip
    """Validate when due by inputs, poll should_stop, report progress every so often."""
    every = ctx.run.settings.num_inputs_between_validations
    if every and progress.inputs >= progress.next_inputs_validation:
        while progress.next_inputs_validation <= progress.inputs:
            progress.next_inputs_validation += every
        validation_point(ctx, out, svc, progress, loop)
    polled = loop.steps % POLL_EVERY_STEPS == 0
    if polled and should_stop is not None and should_stop():
        raise RunCancelled(f"cancelled at {progress.inputs} inputs")
    if loop.steps % FLUSH_EVERY_STEPS == 0 or (
        polled and time.monotonic() - loop.last_flush >= FLUSH_EVERY_SECONDS
    ):
        report_train_losses(ctx, out, svc, progress)
        loop.last_flush = time.monotonic()


def end_epoch(
    ctx: Context, out: Reported, svc: SvcPool, progress: Progress, batches: TrainBatches,
    loop: Loop,
) -> None:  # fmt: skip
    """At an epoch's last batch: count the epoch, and validate when the epoch is due."""
    if progress.batch_in_epoch < batches.num_batches:
        return
    progress.epoch += 1
    progress.batch_in_epoch = 0
    epoch_due = progress.epoch % ctx.run.settings.num_epochs_between_validations == 0
    if epoch_due and progress.last_validation != progress.inputs:
        validation_point(ctx, out, svc, progress, loop)
