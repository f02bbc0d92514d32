"""The training loop: one plain function, `train_run`, in labelled sections (FORMAT.md)."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch

from shared import metric_keys as mk
from worker import plugins

from . import checkpoint as ckpt
from . import datasets
from .autoencoder import AutoencoderTrainer
from .batches import TrainBatches
from .build import BuiltRun, build_run
from .evaluate import EVAL_BATCH_SIZE, EvalBatches, SvcPool, embed, heldout_indices
from .evaluate import validate as run_validation
from .models import count_trainable
from .phases import Phases
from .provenance import provenance
from .step import EagerStep, GraphStep, make_forward_loss

TRAIN_LOSS_STRETCH = 1000  # train loss is the mean over each stretch of at least this many inputs
POLL_EVERY_STEPS = 10  # should_stop() is polled this often
FLUSH_EVERY_STEPS = 200  # pending train-loss points are read from the device (a sync) this often
# ...or after this many seconds, whichever comes first: on a CPU 200 steps of a ViT take minutes,
# and progress bars would sit still that long.
FLUSH_EVERY_SECONDS = 5.0
# torch.compile mode per device type; CUDA graphs where the shapes are fixed (full batches).
COMPILE_MODE = {"cuda": "reduce-overhead"}

Report = Callable[..., None]


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
    """What the helpers below need from the build; fixed for the whole run."""

    run: Any
    trainer: Trainer
    device: torch.device
    folder: ckpt.Folder | None  # local or object storage (checkpoint.py)
    report: Report
    autocast: Callable[[], AbstractContextManager]
    val_batches: EvalBatches | None  # None without a validation_set: train curves only
    heldout: EvalBatches | None
    params: int
    phases: Phases  # where the time goes, reported as the "phases" event at the end


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


def collect_svc(ctx: Context, out: Reported, svc: SvcPool, wait: bool) -> None:
    for step, points in svc.ready(wait=wait):
        emit(ctx, out, points)
        if ctx.folder is not None:
            ckpt.drop_pending_svc(ctx.folder, step)


def flush(ctx: Context, out: Reported, svc: SvcPool, progress: Progress) -> None:
    """Read the pending train losses from the device (a sync) and report them, with progress."""
    if out.pending:
        values = torch.stack([v for _, v, _ in out.pending]).tolist()
        points = []
        for (step, _, lr), value in zip(out.pending, values, strict=True):
            points += [(mk.TRAIN_LOSS, step, value), (mk.LEARNRATE, step, lr)]
        out.pending.clear()
        emit(ctx, out, points)
    collect_svc(ctx, out, svc, wait=False)
    ctx.report("progress", inputs=progress.inputs, total=ctx.run.settings.max_inputs,
               epoch=progress.epoch)  # fmt: skip


def validate(ctx: Context, out: Reported, svc: SvcPool, progress: Progress, seconds: float) -> None:
    """Validation loss (and accuracy), timing, and the SVC probes started in the background.

    Without a validation set only the timing is reported here (the train loss is reported as
    training goes).
    """
    since = progress.inputs - max(progress.last_validation, 0)
    progress.train_seconds += seconds
    flush(ctx, out, svc, progress)
    step = progress.inputs
    points = [(mk.MODEL_PARAMS, step, ctx.params), (mk.TRAIN_SECONDS, step, progress.train_seconds),
              (mk.THROUGHPUT, step, since / seconds if seconds > 0 else 0.0)]  # fmt: skip
    progress.last_validation = step
    if ctx.val_batches is None:
        emit(ctx, out, points)
        return
    model = ctx.run.model
    with ctx.phases.timed("validation"):
        result = run_validation(model, ctx.val_batches, ctx.run.loss_fn, ctx.autocast,
                                representation=ctx.trainer.representation)  # fmt: skip
    points.insert(0, (mk.VALIDATION_LOSS, step, result.loss))
    if result.accuracy_argmax is not None:
        points.append((mk.ACCURACY_ARGMAX, step, result.accuracy_argmax))
    emit(ctx, out, points)
    if result.embeddings is not None:
        payload = {"val_x": result.embeddings, "val_y": result.labels}
        with ctx.phases.timed("embed_heldout"):
            probe = embed(model, ctx.heldout, ctx.autocast) if ctx.heldout is not None else None
        if probe is not None:
            payload["heldout_x"], payload["heldout_y"] = probe
        if ctx.folder is not None:
            with ctx.phases.timed("checkpoint"):
                ckpt.save_pending_svc(ctx.folder, step, payload)
        svc.submit(step, payload)


def save_checkpoint(ctx: Context, out: Reported, progress: Progress,
                    order: torch.Tensor | None, loss_sum: torch.Tensor) -> None:  # fmt: skip
    """Everything a resume needs, written atomically; then the `checkpoint` event."""
    if ctx.folder is None:
        return
    run = ctx.run
    progress.stretch_loss = float(loss_sum)
    state = {
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict() if run.scheduler is not None else None,
        "progress": asdict(progress),
        "order": order.cpu() if order is not None else None,
        "rng": ckpt.rng_states(),
        "points": out.history,
    }
    with ctx.phases.timed("checkpoint"):
        ckpt.save_checkpoint(ctx.folder, state)
    ctx.report("checkpoint", inputs=progress.inputs)


Resumed = tuple[dict | None, Progress, torch.Tensor | None]


def resume(ctx: Context, svc: SvcPool, batches: TrainBatches) -> Resumed:
    """Load the latest checkpoint into the run: (checkpoint, progress, epoch order)."""
    run, s = ctx.run, ctx.run.settings
    ckp = ckpt.load_checkpoint(ctx.folder)
    if ckp is None:
        return None, Progress(next_inputs_validation=s.num_inputs_between_validations), None
    run.model.load_state_dict(ckp["model"])
    run.optimizer.load_state_dict(ckp["optimizer"])
    if run.scheduler is not None:
        run.scheduler.load_state_dict(ckp["scheduler"])
    order = ckp["order"]
    if order is not None and batches.tensors:
        order = order.to(ctx.device)
    ckpt.set_rng_states(ckp["rng"])
    progress = Progress(**ckp["progress"])
    for step, payload in ckpt.load_pending_svc(ctx.folder, progress.inputs).items():
        svc.submit(step, payload)
    return ckp, progress, order


def validation_point(ctx: Context, out: Reported, svc: SvcPool, progress: Progress,
                     order: torch.Tensor | None, step: EagerStep | GraphStep,
                     clock: float) -> float:  # fmt: skip
    """Validate and checkpoint; the training clock stops meanwhile. Returns the new clock."""
    if ctx.device.type == "cuda":
        torch.cuda.synchronize(ctx.device)
    validate(ctx, out, svc, progress, time.perf_counter() - clock)
    save_checkpoint(ctx, out, progress, order, step.loss_sum)
    return time.perf_counter()


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
    config: dict[str, Any],
    report: Report,
    checkpoint_dir: Path | str | None = None,
    device: str | torch.device | None = None,
    should_stop: Callable[[], bool] | None = None,
    data_dir: Path | str | None = None,
) -> dict[str, Any]:
    """Train and evaluate one run as FORMAT.md describes; results leave only through `report`."""
    # ---- build: device, run, trainer, data --------------------------------------------------
    phases = Phases()
    device = resolve_device(device)
    folder = ckpt.as_folder(checkpoint_dir) if checkpoint_dir else None
    decoded_before, built = datasets.load_seconds(), time.perf_counter()
    run = build_run(config, device, data_dir)
    decoding = datasets.load_seconds() - decoded_before
    phases.add("data", decoding)
    phases.add("build", time.perf_counter() - built - decoding)
    data_started = time.perf_counter()
    s = run.settings
    # A name that is not built in comes from a plugin; resolved (or refused) before training.
    trainer = (TRAINERS.get(s.trainer) or plugins.trainer_class(s.trainer, Trainer))()
    run = trainer.prepare(run)
    report("provenance", info=provenance(config, run.seed, device))
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

    # ---- state: fresh, or resumed from the latest checkpoint --------------------------------
    svc = SvcPool(phases=phases)
    out = Reported()
    with phases.timed("resume"):
        ckp, progress, order = resume(ctx, svc, batches)
    step = make_step(ctx, batches)  # after the resume: a graph captures the restored tensors
    step.loss_sum.fill_(progress.stretch_loss)
    if isinstance(step, GraphStep):
        step.sync_lr()
    if ckp is not None:
        emit(ctx, out, [(str(k), int(i), v) for k, i, v in ckp.get("points", [])], "replay")

    # ---- the loop ------------------------------------------------------------------------------
    steps, clock, last_flush = 0, time.perf_counter(), time.monotonic()
    trained_before = progress.train_seconds
    at_validation = partial(validation_point, ctx, out, svc)
    try:
        finished = False
        while not finished:
            if s.max_epoch is not None and progress.epoch >= s.max_epoch:
                break
            if progress.batch_in_epoch == 0 or order is None:
                order = batches.new_order()
            graph = isinstance(step, GraphStep)
            for batch in batches.epoch(order, progress.batch_in_epoch, indices=graph):
                # -- one training step (its loss is added to step.loss_sum on the device)
                if steps == 0 and (s.compile or s.step_graph):
                    # The first call compiles or captures: shown apart (it is within `train`).
                    with phases.timed("compile"):
                        n = step(batch)
                else:
                    n = step(batch)
                progress.inputs += n
                progress.batch_in_epoch += 1
                steps += 1
                # -- train loss: mean per stretch of >= 1,000 inputs, read at the next flush
                progress.stretch_batches += 1
                progress.stretch_inputs += n
                if progress.stretch_inputs >= TRAIN_LOSS_STRETCH:
                    mean = step.loss_sum / progress.stretch_batches
                    out.pending.append((progress.inputs, mean, step.lr()))
                    step.loss_sum.zero_()
                    progress.stretch_batches = progress.stretch_inputs = 0
                # -- stop, validate by inputs, poll, flush
                if s.max_inputs is not None and progress.inputs >= s.max_inputs:
                    finished = True
                    break
                every = s.num_inputs_between_validations
                if every and progress.inputs >= progress.next_inputs_validation:
                    while progress.next_inputs_validation <= progress.inputs:
                        progress.next_inputs_validation += every
                    clock = at_validation(progress, order, step, clock)
                if steps % POLL_EVERY_STEPS == 0 and should_stop is not None and should_stop():
                    raise RunCancelled(f"cancelled at {progress.inputs} inputs")
                if steps % FLUSH_EVERY_STEPS == 0 or (
                    steps % POLL_EVERY_STEPS == 0
                    and time.monotonic() - last_flush >= FLUSH_EVERY_SECONDS
                ):
                    flush(ctx, out, svc, progress)
                    last_flush = time.monotonic()
            # -- epoch end
            if progress.batch_in_epoch >= batches.num_batches:
                progress.epoch += 1
                progress.batch_in_epoch = 0
                epoch_due = progress.epoch % s.num_epochs_between_validations == 0
                if epoch_due and progress.last_validation != progress.inputs:
                    clock = at_validation(progress, order, step, clock)

        # ---- the end: a last validation if the last epoch did not validate, then the SVCs -----
        if progress.last_validation != progress.inputs:
            at_validation(progress, order, step, clock)
        flush(ctx, out, svc, progress)
        with phases.timed("svc_wait"):
            collect_svc(ctx, out, svc, wait=True)
        if folder is not None:
            with phases.timed("checkpoint"):
                ckpt.save_model(folder, run.model, config)
    finally:
        svc.shutdown()
        phases.add("train", progress.train_seconds - trained_before)
        report("phases", phases=phases.as_dict())
    return {**out.summary, "inputs": progress.inputs, "epoch": progress.epoch, "seed": run.seed}
