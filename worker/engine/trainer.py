"""The training loop: one plain function, `train_run`, in labelled sections (FORMAT.md)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from . import checkpoint as ckpt
from . import datasets
from .build import build_run
from .datasets import tensors_of, to_device_compact
from .evaluate import EVAL_BATCH_SIZE, EvalBatches, SvcPool, embed, heldout_indices, to_device
from .evaluate import validate as run_validation
from .models import count_trainable
from .phases import Phases
from .provenance import provenance

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
    """Trains on the configured loss and validates the loss."""

    representation = False


class RepresentationClassTrainer(Trainer):
    """Also reports argmax accuracy and SVC probes on the model's embedding at each validation."""

    representation = True


TRAINERS: dict[str, type[Trainer]] = {
    "Trainer": Trainer,
    "experiments.trainer.Trainer": Trainer,
    "RepresentationClassTrainer": RepresentationClassTrainer,
    "experiments.reptrainer.RepresentationClassTrainer": RepresentationClassTrainer,
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


class TrainBatches:
    """Training batches. Tensor datasets live on the device and are batched by index with a
    per-epoch permutation (no per-sample Python, no DataLoader); others use a DataLoader."""

    def __init__(self, dataset: Any, batch_size: int, device: torch.device, num_workers: int):
        self.batch_size, self.device = batch_size, device
        tensors = tensors_of(dataset)
        self.tensors = tuple(to_device_compact(t, device) for t in tensors) if tensors else None
        if self.tensors is not None:
            self.length = len(self.tensors[0])
            self.num_batches = math.ceil(self.length / batch_size)
        else:
            self.loader = DataLoader(
                dataset,
                batch_size=batch_size,
                shuffle=True,
                num_workers=num_workers,
                pin_memory=device.type == "cuda",
            )
            self.num_batches = len(self.loader)

    def new_order(self) -> torch.Tensor:
        """This epoch's order: a permutation, or (DataLoader) the RNG state that shuffles it."""
        if self.tensors is not None:
            return torch.randperm(self.length, device=self.device)
        return torch.get_rng_state()

    def epoch(self, order: torch.Tensor, start: int) -> Iterator[tuple[torch.Tensor, ...]]:
        if self.tensors is not None:
            for i in range(start * self.batch_size, self.length, self.batch_size):
                idx = order[i : i + self.batch_size]
                yield tuple(t[idx] for t in self.tensors)
            return
        # Resuming mid-epoch: replay the epoch's shuffle, skip what was trained, then restore
        # the RNG as it was at the checkpoint.
        current = ckpt.rng_states() if start else None
        torch.set_rng_state(order)
        for i, batch in enumerate(self.loader):
            if i < start:
                continue
            if current is not None:
                ckpt.set_rng_states(current)
                current = None
            yield tuple(to_device(b, self.device) for b in batch)


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
    phases = Phases()  # where the time goes, reported as the "phases" event at the end
    device = resolve_device(device)
    folder = ckpt.as_folder(checkpoint_dir) if checkpoint_dir else None
    decoded_before, built = datasets.load_seconds(), time.perf_counter()
    run = build_run(config, device, data_dir)
    decoding = datasets.load_seconds() - decoded_before
    phases.add("data", decoding)
    phases.add("build", time.perf_counter() - built - decoding)
    data_started = time.perf_counter()
    s = run.settings
    if s.trainer not in TRAINERS:
        raise ValueError(f"trainer {s.trainer!r} is not one of {', '.join(TRAINERS)}")
    trainer = TRAINERS[s.trainer]()
    model, optimizer, scheduler = run.model, run.optimizer, run.scheduler
    report("provenance", info=provenance(config, run.seed, device))
    batches = TrainBatches(run.train_set, s.batch_size, device, s.num_workers)
    eval_size = s.validation_batch_size or EVAL_BATCH_SIZE
    val_batches = EvalBatches(
        run.validation_set, eval_size, device, freeze=s.freeze_validation_set,
        num_workers=s.num_workers,
    )  # fmt: skip
    heldout = None
    if trainer.representation:
        n_train = len(run.train_set)
        heldout = EvalBatches(
            run.train_set, eval_size, device, indices=heldout_indices(n_train),
            num_workers=s.num_workers, device_tensors=batches.tensors,
        )  # fmt: skip
    params = count_trainable(model)
    phases.add("data", time.perf_counter() - data_started)

    # ---- the step: one code path for fp32/bf16, optionally compiled -------------------------
    def autocast() -> AbstractContextManager:
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=s.precision == "bf16")

    # The input transforms are part of the step, so `compile` captures them with the model.
    def forward_loss(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        for transform in run.transforms:
            x = transform(x)
        with autocast():
            output = model(x)
        return run.loss_fn(output.float(), target)

    compiled_loss = forward_loss
    if s.compile:
        # Fixed shapes: a final partial batch runs eagerly instead of recompiling each epoch.
        # The optimizer step stays eager, so a float learning rate cannot trigger a recompile.
        compiled_loss = torch.compile(
            forward_loss, dynamic=False, mode=COMPILE_MODE.get(device.type)
        )
    mark_step = s.compile and device.type == "cuda"

    # ---- state, and resume from the latest checkpoint ----------------------------------------
    progress = Progress(next_inputs_validation=s.num_inputs_between_validations)
    order: torch.Tensor | None = None
    svc = SvcPool(phases=phases)
    resume_started = time.perf_counter()
    ckp = ckpt.load_checkpoint(folder)
    if ckp is not None:
        model.load_state_dict(ckp["model"])
        optimizer.load_state_dict(ckp["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(ckp["scheduler"])
        progress = Progress(**ckp["progress"])
        order = (
            ckp["order"].to(device)
            if ckp["order"] is not None and batches.tensors
            else ckp["order"]
        )
        ckpt.set_rng_states(ckp["rng"])
        for step, payload in ckpt.load_pending_svc(folder, progress.inputs).items():
            svc.submit(step, payload)
    phases.add("resume", time.perf_counter() - resume_started)
    stretch_sum = torch.tensor(progress.stretch_loss, device=device)
    pending_losses: list[tuple[int, torch.Tensor, float]] = []
    summary: dict[str, Any] = {}  # the latest value of each metric
    last_step: dict[str, int] = {}
    # Every point reported, saved in each checkpoint and handed back on resume ("replay"):
    # `report` may store points after the checkpoint is written, so an attempt that dies in
    # between would otherwise lose the points up to its checkpoint for good.
    history: list[tuple[str, int, float]] = []
    clock = time.perf_counter()

    # ---- reporting helpers (the only host syncs: at logging points) --------------------------
    def emit(points: list[tuple[str, int, float]], event: str = "metrics") -> None:
        if points:
            report(event, points=points)
            history.extend(points)
            for key, step, value in points:
                if step >= last_step.get(key, -1):
                    summary[key], last_step[key] = value, step

    def flush() -> None:
        if pending_losses:
            values = torch.stack([v for _, v, _ in pending_losses]).tolist()
            points = []
            for (step, _, lr), value in zip(pending_losses, values, strict=True):
                points += [("train_loss", step, value), ("learnrate", step, lr)]
            pending_losses.clear()
            emit(points)
        collect_svc(wait=False)
        report("progress", inputs=progress.inputs, total=s.max_inputs, epoch=progress.epoch)

    def collect_svc(wait: bool) -> None:
        for step, points in svc.ready(wait=wait):
            emit(points)
            if folder is not None:
                ckpt.drop_pending_svc(folder, step)

    def validate() -> None:
        nonlocal clock, stretch_sum
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - clock
        since = progress.inputs - max(progress.last_validation, 0)
        progress.train_seconds += seconds
        flush()
        with phases.timed("validation"):
            result = run_validation(model, val_batches, run.loss_fn, autocast,
                                    representation=trainer.representation)  # fmt: skip
        step = progress.inputs
        points = [("validation_loss", step, result.loss), ("model_params", step, params),
                  ("train_seconds", step, progress.train_seconds),
                  ("throughput", step, since / seconds if seconds > 0 else 0.0)]  # fmt: skip
        if result.accuracy_argmax is not None:
            points.append(("accuracy_argmax", step, result.accuracy_argmax))
        emit(points)
        progress.last_validation = step
        if result.embeddings is not None:
            payload = {"val_x": result.embeddings, "val_y": result.labels}
            with phases.timed("embed_heldout"):
                probe = embed(model, heldout, autocast) if heldout is not None else None
            if probe is not None:
                payload["heldout_x"], payload["heldout_y"] = probe
            if folder is not None:
                with phases.timed("checkpoint"):
                    ckpt.save_pending_svc(folder, step, payload)
            svc.submit(step, payload)
        if folder is not None:
            checkpoint_started = time.perf_counter()
            progress.stretch_loss = float(stretch_sum)
            state = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "progress": asdict(progress),
                "order": order.cpu() if order is not None else None,
                "rng": ckpt.rng_states(),
                "points": history,
            }
            ckpt.save_checkpoint(folder, state)
            phases.add("checkpoint", time.perf_counter() - checkpoint_started)
            report("checkpoint", inputs=step)
        clock = time.perf_counter()

    if ckp is not None:
        emit([(str(k), int(s), v) for k, s, v in ckp.get("points", [])], event="replay")

    # ---- the loop -----------------------------------------------------------------------------
    steps = 0
    last_flush = time.monotonic()
    trained_before = progress.train_seconds
    try:
        finished = False
        while not finished:
            if s.max_epoch is not None and progress.epoch >= s.max_epoch:
                break
            if progress.batch_in_epoch == 0 or order is None:
                order = batches.new_order()
            for batch in batches.epoch(order, progress.batch_in_epoch):
                # -- one training step
                x, target = batch[0], batch[1]
                step_loss = compiled_loss if len(x) == s.batch_size else forward_loss
                if mark_step:
                    torch.compiler.cudagraph_mark_step_begin()
                if steps == 0 and step_loss is compiled_loss and s.compile:
                    # The first call compiles: its time is shown apart (it is within `train`).
                    with phases.timed("compile"):
                        loss = step_loss(x, target)
                else:
                    loss = step_loss(x, target)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                n = len(x)
                progress.inputs += n
                progress.batch_in_epoch += 1
                steps += 1
                # -- train loss: mean per stretch of >= 1,000 inputs, kept on the device
                stretch_sum = stretch_sum + loss.detach().float()
                progress.stretch_batches += 1
                progress.stretch_inputs += n
                if progress.stretch_inputs >= TRAIN_LOSS_STRETCH:
                    lr = float(optimizer.param_groups[0]["lr"])
                    pending_losses.append(
                        (progress.inputs, stretch_sum / progress.stretch_batches, lr)
                    )
                    stretch_sum = torch.zeros((), device=device)
                    progress.stretch_batches = progress.stretch_inputs = 0
                # -- stop, validate by inputs, poll, log
                if s.max_inputs is not None and progress.inputs >= s.max_inputs:
                    finished = True
                    break
                every = s.num_inputs_between_validations
                if every and progress.inputs >= progress.next_inputs_validation:
                    while progress.next_inputs_validation <= progress.inputs:
                        progress.next_inputs_validation += every
                    validate()
                if steps % POLL_EVERY_STEPS == 0 and should_stop is not None and should_stop():
                    raise RunCancelled(f"cancelled at {progress.inputs} inputs")
                if steps % FLUSH_EVERY_STEPS == 0 or (
                    steps % POLL_EVERY_STEPS == 0
                    and time.monotonic() - last_flush >= FLUSH_EVERY_SECONDS
                ):
                    flush()
                    last_flush = time.monotonic()
            # -- epoch end
            if progress.batch_in_epoch >= batches.num_batches:
                progress.epoch += 1
                progress.batch_in_epoch = 0
                epoch_due = progress.epoch % s.num_epochs_between_validations == 0
                if epoch_due and progress.last_validation != progress.inputs:
                    validate()

        # ---- the end: a last validation if the last epoch did not validate, then the SVCs -----
        if progress.last_validation != progress.inputs:
            validate()
        flush()
        with phases.timed("svc_wait"):
            collect_svc(wait=True)
    finally:
        svc.shutdown()
        phases.add("train", progress.train_seconds - trained_before)
        report("phases", phases=phases.as_dict())
    summary["inputs"] = progress.inputs
    summary["epoch"] = progress.epoch
    summary["seed"] = run.seed
    return summary
