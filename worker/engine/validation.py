"""The loop's reporting points: pending train losses, validations with their probes, and
checkpoints (and the resume from the latest one)."""

from __future__ import annotations

import time
from dataclasses import asdict

import torch

from shared import metric_keys as mk

from . import checkpoint as ckpt
from .batches import TrainBatches
from .evaluate import SvcPool, ValidationResult, embed, validation_pass
from .state import Context, Loop, Progress, Reported, emit


def collect_svc(ctx: Context, out: Reported, svc: SvcPool, wait: bool) -> None:
    for step, points in svc.ready(wait=wait):
        emit(ctx, out, points)
        if ctx.folder is not None:
            ckpt.drop_pending_svc(ctx.folder, step)


def report_train_losses(ctx: Context, out: Reported, svc: SvcPool, progress: Progress) -> None:
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


def report_validation(
    ctx: Context, out: Reported, svc: SvcPool, progress: Progress, seconds: float
) -> ValidationResult | None:
    """Validation loss (and accuracy) and timing, reported at the current inputs.

    Without a validation set only the timing is reported here (the train loss is reported as
    training goes), and there is no result.
    """
    since = progress.inputs - max(progress.last_validation, 0)
    progress.train_seconds += seconds
    report_train_losses(ctx, out, svc, progress)
    step = progress.inputs
    points = [(mk.MODEL_PARAMS, step, ctx.params), (mk.TRAIN_SECONDS, step, progress.train_seconds),
              (mk.THROUGHPUT, step, since / seconds if seconds > 0 else 0.0)]  # fmt: skip
    progress.last_validation = step
    if ctx.val_batches is None:
        emit(ctx, out, points)
        return None
    with ctx.phases.timed("validation"):
        result = validation_pass(ctx.run.model, ctx.val_batches, ctx.run.loss_fn, ctx.autocast,
                                 representation=ctx.trainer.representation)  # fmt: skip
    points.insert(0, (mk.VALIDATION_LOSS, step, result.loss))
    if result.accuracy_argmax is not None:
        points.append((mk.ACCURACY_ARGMAX, step, result.accuracy_argmax))
    emit(ctx, out, points)
    return result


def start_probes(ctx: Context, svc: SvcPool, step: int, result: ValidationResult | None) -> None:
    """The SVC probes on the validation's embeddings (and the held-out ones), fitted in the
    background; their inputs are saved first, so a resumed attempt fits them again."""
    if result is None or result.embeddings is None:
        return
    payload = {"val_x": result.embeddings, "val_y": result.labels}
    with ctx.phases.timed("embed_heldout"):
        probe = embed(ctx.run.model, ctx.heldout, ctx.autocast) if ctx.heldout is not None else None
    if probe is not None:
        payload["heldout_x"], payload["heldout_y"] = probe
    if ctx.folder is not None:
        with ctx.phases.timed("checkpoint"):
            ckpt.save_pending_svc(ctx.folder, step, payload)
    svc.submit(step, payload)


def save_checkpoint(ctx: Context, out: Reported, progress: Progress, loop: Loop) -> None:
    """Everything a resume needs, written atomically; then the `checkpoint` event."""
    if ctx.folder is None:
        return
    run = ctx.run
    progress.stretch_loss = float(loop.step.loss_sum)
    state = {
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict() if run.scheduler is not None else None,
        "progress": asdict(progress),
        "order": loop.order.cpu() if loop.order is not None else None,
        "rng": ckpt.rng_states(),
        "points": out.history,
    }
    with ctx.phases.timed("checkpoint"):
        ckpt.save_checkpoint(ctx.folder, state)
    ctx.report("checkpoint", inputs=progress.inputs)


def validation_point(
    ctx: Context, out: Reported, svc: SvcPool, progress: Progress, loop: Loop
) -> None:
    """Validate, start the probes and checkpoint; the training clock stops meanwhile."""
    if ctx.device.type == "cuda":
        torch.cuda.synchronize(ctx.device)
    result = report_validation(ctx, out, svc, progress, time.perf_counter() - loop.clock)
    start_probes(ctx, svc, progress.inputs, result)
    save_checkpoint(ctx, out, progress, loop)
    loop.clock = time.perf_counter()


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
