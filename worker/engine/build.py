"""Build one run from its configuration: settings, namespace, model, data, loss, optimizer."""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from shared.sweepfile.run_config import RunConfig, RunSettings
from worker import project

from . import losses, namespace
from .augment import device_twin
from .checkpoint import load_weights, seed_everything
from .datasets import Collated


@dataclass
class BuiltRun:
    """A run ready to train: typed settings, seed, model, data, loss, optimizer, scheduler."""

    settings: RunSettings
    seed: int
    namespace: dict[str, Any]
    model: nn.Module
    train_set: Any
    validation_set: Any
    loss_fn: Callable
    transforms: list[Callable]
    optimizer: torch.optim.Optimizer
    scheduler: Any
    # step_graph: the optimizer the scheduler steps (host floats); the real one reads its
    # learning rate from a device tensor (step.py). None otherwise.
    shadow_optimizer: torch.optim.Optimizer | None = None


def build_model(
    config: dict[str, Any], data_dir: Path | str | None = None
) -> tuple[nn.Module, dict]:
    """A fresh namespace with the run's globals, and the model its `model` code gives."""
    ns = namespace.build_namespace(data_dir)
    namespace.evaluate_globals(config.get("globals"), ns)
    model = namespace.config_value(config, "model", ns)
    if not isinstance(model, nn.Module):
        raise TypeError(f"'model' must give an nn.Module, got {type(model).__name__}")
    return model, ns


def build_run(
    run_config: RunConfig, device: torch.device, data_dir: Path | str | None = None
) -> BuiltRun:
    """Everything a run trains with: its typed settings, and what its code gives."""
    values = dict(run_config.values)
    config = namespace.resolve_code_scalars(values, data_dir)
    settings = run_config.settings
    if config is not values:  # scalars written as code are known only now, in its namespace
        settings = RunSettings.from_config(config, own_schedulers=project.current() is not None)
    seed = settings.seed if settings.seed is not None else random.SystemRandom().randrange(2**31)
    seed_everything(seed)
    model, ns = build_model(config, data_dir)
    model.to(device)
    if config.get("load"):
        loaded = project.current()
        load_weights(model, str(config["load"]), loaded.project.root if loaded else None)
    train_set = namespace.config_value(config, "train_set", ns)
    validation_set = namespace.config_value(config, "validation_set", ns)
    collate = namespace.config_value(config, "dataloader_collate_fn", ns)
    if collate is not None:
        train_set = Collated(train_set, collate)
        validation_set = Collated(validation_set, collate) if validation_set is not None else None
    loss_fn = losses.make_loss(namespace.config_value(config, "loss_function", ns))
    transforms = namespace.config_value(config, "train_input_transforms", ns) or []
    if callable(transforms):
        transforms = [transforms]
    transforms = list(transforms)
    for t in transforms:
        if not callable(t):
            raise TypeError(
                f"'train_input_transforms' must give a list of callables, got {t!r} "
                "(a one-line string is not code: use a YAML '|' block)"
            )
    if settings.compile or settings.step_graph:
        # torchvision's TrivialAugmentWide draws its operation on the host: a sync and a graph
        # break every step. Its device twin draws from the same space, one operation per call,
        # so the transforms compile into one graph with the model (FORMAT.md, "compile"),
        # or are captured with the step (`step_graph`).
        transforms = [device_twin(t) for t in transforms]
    for t in transforms:
        if isinstance(t, nn.Module):
            t.to(device)
    optimizer = make_optimizer(settings, model)
    shadow = make_shadow_optimizer(settings) if settings.step_graph else None
    scheduler = make_scheduler(settings, shadow or optimizer)
    return BuiltRun(settings, seed, ns, model, train_set, validation_set, loss_fn, transforms,
                    optimizer, scheduler, shadow)  # fmt: skip


FUSED_OPTIMIZERS = frozenset({"Adam", "AdamW", "SGD", "Adagrad"})


def make_optimizer(settings: RunSettings, model: nn.Module) -> torch.optim.Optimizer:
    cls = getattr(torch.optim, settings.optimizer, None)
    if cls is None:
        raise ValueError(f"optimizer {settings.optimizer!r} is not in torch.optim")
    params = list(model.parameters())
    extra: dict[str, Any] = {}
    if settings.step_graph:
        return make_graph_optimizer(settings, cls, params)
    # Same update rule, one fused CUDA kernel instead of several launches per parameter group:
    # a small model's step is launch-bound on a GPU (BENCHMARKS.md, "GPU").
    if settings.optimizer in FUSED_OPTIMIZERS and params and all(p.is_cuda for p in params):
        extra["fused"] = True
    return cls(params, lr=settings.learnrate, **extra)


def make_scheduler(settings: RunSettings, optimizer: torch.optim.Optimizer) -> Any:
    if not settings.scheduler:
        return None
    return scheduler_class(settings.scheduler)(optimizer, settings.scheduler_steps)


def scheduler_class(name: str) -> Any:
    """The project's scheduler of that name (src.scheduler), else torch's; ValueError if neither."""
    cls = project.scheduler_class(name) or getattr(torch.optim.lr_scheduler, name, None)
    if cls is None:
        where = " or the project's src.scheduler" if project.current() is not None else ""
        raise ValueError(f"scheduler {name!r} is not in torch.optim.lr_scheduler{where}")
    return cls


def make_graph_optimizer(settings: RunSettings, cls: type, params: list) -> torch.optim.Optimizer:
    """For `step_graph`: the learning rate as a device tensor the captured step reads, and on
    CUDA `capturable=True` (the step counter lives on the device too)."""
    if "capturable" not in inspect.signature(cls.__init__).parameters:
        raise ValueError(
            f"'step_graph' needs an optimizer with a capturable step (Adam, AdamW, ...), "
            f"got {settings.optimizer!r}"
        )
    device = params[0].device if params else torch.device("cpu")
    lr = torch.tensor(settings.learnrate, dtype=torch.float32, device=device)
    # capturable is CUDA-only; on a CPU the same step runs eagerly, where a tensor learning
    # rate needs the single-tensor implementation.
    if device.type == "cuda":
        return cls(params, lr=lr, capturable=True, foreach=True)
    return cls(params, lr=lr, foreach=False)


def make_shadow_optimizer(settings: RunSettings) -> torch.optim.Optimizer:
    """A one-parameter host optimizer the scheduler steps; its lr is copied to the device."""
    return torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=settings.learnrate)
