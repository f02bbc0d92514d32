"""Trainers of the user's project (nn-experiments' Trainer API) on a sweeps worker.

The class is constructed with the arguments nn-experiments' loader gives it (model, data
loaders, optimizers, schedulers, and every top-level key the loader does not use itself) and
runs its own `train()`. Around it sweeps adds what it adds to its own runs (project_hooks.py):
logged scalars become the run's metrics, checkpoints go to the artifact store and come back on
a resume, and cancel, prune and lease loss end `train()`. Each run works in a folder of its own,
so runs never share checkpoint or TensorBoard folders; code blocks run in the project root, as
they do when the original is started from its checkout.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset

from shared import metric_keys as mk
from shared.artifacts import Folder, join_location, open_folder
from shared.sweepfile.config_checks import trainer_source
from shared.sweepfile.run_config import RunConfig
from worker import plugins, project

from . import build, namespace
from .checkpoint import load_weights, save_model, seed_everything
from .models import count_trainable
from .project_hooks import POINTS_FILE, CheckpointSync, Watch, points_blob, points_of
from .provenance import provenance
from .trainer import Trainer, resolve_device, train_run

# Keys the original's loader consumes itself (the rest go to the trainer's constructor)...
LOADER_KEYS = (
    "trainer", "train_set", "validation_set", "batch_size", "learnrate", "optimizer",
    "scheduler", "num_workers", "dataloader_collate_fn", "validation_batch_size", "globals",
)  # fmt: skip
# ...and sweeps' own keys, which no project trainer takes.
SWEEPS_KEYS = ("matrix", "description", "early_stop", "search", "seed", "precision", "compile",
               "step_graph", "load")  # fmt: skip

TrainFn = Callable[..., dict[str, Any]]
log = logging.getLogger(__name__)


def engine_for(run_config: RunConfig) -> tuple[TrainFn, RunConfig]:
    """The function that trains this run, and its configuration with `${PATH}` filled in.

    Sweeps' trainers (and plugin subclasses of them) train in `train_run`; any other trainer
    class is the project's (or a plugin's) nn-experiments-style trainer. Who provides it is
    decided as at preview (`trainer_source`): a built-in name the project defines, or no
    `trainer` with a project that defines `Trainer`, is the project's. ValueError names a
    trainer that cannot be found or used, before anything is built.
    """
    from .trainer import TRAINERS

    config = project.fill_path(dict(run_config.values))
    filled = RunConfig(run_config.settings, config)
    name = run_config.settings.trainer
    loaded = project.current()
    source = trainer_source(config, plugins.modules(), loaded.project if loaded else None)
    if source == "engine" and name in TRAINERS:
        return train_run, filled
    if source == "plugin":
        found = plugins.trainer_class(name, Trainer)
    else:
        found = project.resolve_trainer(name)
    if isinstance(found, type) and issubclass(found, Trainer):
        return train_run, filled
    if not (isinstance(found, type) and callable(getattr(found, "train", None))):
        raise ValueError(f"trainer {name!r} is not a trainer class (a class with train())")
    check_constructor(name, found, passed_keys(config))
    return partial(train_project_run, trainer_class=found), filled


def passed_keys(config: dict[str, Any]) -> list[str]:
    """The constructor's keyword arguments, as the original's loader passes them."""
    own = [k for k in config if k not in LOADER_KEYS and k not in SWEEPS_KEYS]
    built = ["data_loader", "optimizers"]
    built += ["validation_loader"] if config.get("validation_set") is not None else []
    built += ["schedulers"] if config.get("scheduler") else []
    return own + built


def constructor_keys(cls: type) -> set[str] | None:
    """Keyword names `cls(...)` takes, following `**kwargs` up its bases; None: any name."""
    taken: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        if klass is object:
            return taken
        try:
            parameters = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            return None  # a C constructor: nothing to read
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        taken |= {p.name for p in parameters if p.kind in kinds} - {"self"}
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
            return taken
    return None


def check_constructor(name: str, cls: type, keys: list[str]) -> None:
    """ValueError naming every key the trainer's constructor does not take."""
    taken = constructor_keys(cls)
    if taken is None:
        return
    unknown = [k for k in keys if k not in taken]
    if unknown:
        listed = ", ".join(repr(k) for k in unknown)
        raise ValueError(
            f"trainer {name!r} does not take {listed} (its constructor takes: "
            f"{', '.join(sorted(taken))})"
        )


@contextlib.contextmanager
def working_dir(path: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def build_kwargs(config: dict[str, Any], ns: dict[str, Any]) -> dict[str, Any]:
    """The constructor's arguments from the configuration, as the original's loader makes them
    (code blocks run in `ns`; `device` and `reset` are added by the caller)."""
    values = {k: namespace.config_value(config, k, ns) for k in config if k != "globals"}
    model = values["model"]
    train_set, validation_set = values["train_set"], values.get("validation_set")
    batch_size = int(values["batch_size"])
    collate = values.get("dataloader_collate_fn")
    kwargs: dict[str, Any] = {"num_epochs_between_validations": 1}
    kwargs.update({k: v for k, v in values.items() if k not in LOADER_KEYS + SWEEPS_KEYS})
    kwargs["data_loader"] = DataLoader(
        train_set, batch_size=batch_size, shuffle=not isinstance(train_set, IterableDataset),
        num_workers=int(values.get("num_workers") or 0), collate_fn=collate,
    )  # fmt: skip
    if validation_set is not None:
        kwargs["validation_loader"] = DataLoader(
            validation_set, batch_size=int(values.get("validation_batch_size") or batch_size),
            collate_fn=collate,
        )  # fmt: skip
    optimizer_class = getattr(torch.optim, str(values["optimizer"]))
    optimizer = optimizer_class(model.parameters(), lr=float(values["learnrate"]))
    kwargs["optimizers"] = [optimizer]
    if values.get("scheduler"):
        scheduler_class = build.scheduler_class(str(values["scheduler"]))
        kwargs["schedulers"] = [scheduler_class(optimizer, int(values["max_inputs"]) // batch_size)]
    return kwargs


def train_project_run(
    run_config: RunConfig,
    report: Callable[..., None],
    checkpoint_dir: Path | str | None = None,
    device: str | torch.device | None = None,
    should_stop: Callable[[], bool] | None = None,
    data_dir: Path | str | None = None,
    *,
    trainer_class: type,
) -> dict[str, Any]:
    """Construct the project's trainer as the original would, and run its own train()."""
    config = namespace.resolve_code_scalars(dict(run_config.values), data_dir)
    device = resolve_device(device)
    seed = config.get("seed")
    seed = int(seed) if seed is not None else random.SystemRandom().randrange(2**31)
    seed_everything(seed)
    report("provenance", info=provenance(config, seed, device))
    loaded = project.current()
    root = loaded.project.root if loaded is not None else Path.cwd()
    workdir = Path(tempfile.mkdtemp(prefix="sweeps-project-run-"))
    try:
        with working_dir(root):
            ns = namespace.build_namespace(data_dir)
            namespace.evaluate_globals(config.get("globals"), ns)
            kwargs = build_kwargs(config, ns)
        trainer = construct(trainer_class, kwargs, device, workdir, str(config["experiment_name"]))
        watch = Watch(report, should_stop, config.get("max_inputs"))
        watch.attach(trainer)
        store = RunStore.of(checkpoint_dir, trainer)
        resumed = store is not None and store.restore(trainer, watch)
        if not resumed and config.get("load"):
            load_weights(trainer.model, str(config["load"]), root)
        _hook_checkpoints(trainer, watch, store)
        with working_dir(root):
            summary = _train(trainer, watch)
        if store is not None:
            with contextlib.suppress(Exception):  # the events written so far, at least
                trainer.writer.flush()
            store.save(watch)
            # the trained model for `sweeps pull`, as for sweeps' own trainers
            save_model(store.folder, trainer.model, config)
        return {**summary, "seed": seed}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def construct(cls: type, kwargs: dict[str, Any], device: torch.device, workdir: Path,
              name: str) -> Any:  # fmt: skip
    """The trainer, made in the run's own folder: its ./runs and ./checkpoints are the run's."""
    taken = constructor_keys(cls)
    for key, value in (("device", str(device)), ("reset", False)):
        if taken is None or key in taken:
            kwargs.setdefault(key, value)
    with working_dir(workdir):
        trainer = cls(**kwargs)
    trainer.checkpoint_path = workdir / "checkpoints" / name
    trainer.tensorboard_path = workdir / "runs" / name
    _absolute_writer(trainer, workdir)
    return trainer


def _train(trainer: Any, watch: Watch) -> dict[str, Any]:
    """The trainer's own train(), then sweeps' summary points (size, time, throughput)."""
    started, before = time.perf_counter(), watch.inputs()
    if callable(getattr(trainer, "save_description", None)):
        trainer.save_description()
    trainer.train()
    seconds = time.perf_counter() - started
    step = watch.inputs()
    throughput = (step - before) / seconds if seconds > 0 else 0.0
    watch.emit([(mk.MODEL_PARAMS, step, float(count_trainable(trainer.model))),
                (mk.TRAIN_SECONDS, step, seconds), (mk.THROUGHPUT, step, throughput)])  # fmt: skip
    watch.report("phases", phases={"train": round(seconds, 3)})
    return {**watch.summary, "inputs": step, "epoch": int(getattr(trainer, "epoch", 0))}


def _absolute_writer(trainer: Any, workdir: Path) -> None:
    """TensorBoard's writer reopens its file by the relative name it was given: made relative
    to the run's folder, it must stay there while train() runs in the project root."""
    writer = getattr(trainer, "writer", None)
    log_dir = getattr(writer, "log_dir", None)
    if writer is None or log_dir is None or Path(log_dir).is_absolute():
        return
    writer.close()
    shutil.rmtree(workdir / log_dir, ignore_errors=True)  # its empty first file, made just now
    trainer.writer = type(writer)(str(workdir / log_dir))


@dataclass
class RunStore:
    """The run's artifact folder: the trainer's checkpoint files and the points reported."""

    folder: Folder
    sync: CheckpointSync
    logs: CheckpointSync  # the TensorBoard event files, kept with the run

    @classmethod
    def of(cls, checkpoint_dir: Path | str | None, trainer: Any) -> RunStore | None:
        if not checkpoint_dir:
            return None
        files = open_folder(join_location(checkpoint_dir, "checkpoints"))
        events = open_folder(join_location(checkpoint_dir, "tensorboard"))
        writer = getattr(trainer, "writer", None)
        log_dir = Path(getattr(writer, "log_dir", None) or trainer.tensorboard_path)
        return cls(open_folder(checkpoint_dir), CheckpointSync(trainer.checkpoint_path, files),
                   CheckpointSync(log_dir, events))  # fmt: skip

    def save(self, watch: Watch) -> None:
        self.sync.push()
        self.logs.push()
        blob = points_blob(watch.history)
        self.folder.write(POINTS_FILE, lambda fh: fh.write(blob))

    def restore(self, trainer: Any, watch: Watch) -> bool:
        """Bring the stored files back and load them as the original does (its best
        checkpoint, else its snapshot); replay the points stored with them."""
        if not self.sync.pull():
            return False
        if inspect.signature(trainer.load_checkpoint).parameters:
            loaded = trainer.load_checkpoint("best") or trainer.load_checkpoint()
        else:
            loaded = trainer.load_checkpoint()
        fh = self.folder.read(POINTS_FILE)
        if fh is not None:
            with fh:
                points = points_of(fh.read())
            if points:
                watch.emit(points, "replay")
        if loaded:
            log.info("resumed from the stored checkpoint at %d inputs", watch.inputs())
        return bool(loaded)


def _hook_checkpoints(trainer: Any, watch: Watch, store: RunStore | None) -> None:
    """After each of the trainer's checkpoints: copy it to the store, then poll for a stop."""
    original = trainer.save_checkpoint

    def save_checkpoint(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if store is not None:
            store.save(watch)
            watch.report("checkpoint", inputs=watch.inputs())
        watch.poll()
        return result

    trainer.save_checkpoint = save_checkpoint
