"""A fresh namespace per run, and the rule for running the YAML's code blocks."""

from __future__ import annotations

import ast
import builtins
import functools
import itertools
import math
import random
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
import torchvision.transforms as VT
import torchvision.transforms.functional as VF
from torch import nn

from . import augment, datasets, models

# FORMAT.md: these keys are always code; any other key only when it is a multi-line string.
ALWAYS_CODE_PREFIXES = ("model", "train_set", "validation_set")


def is_code(key: str, value: Any) -> bool:
    if key.startswith(ALWAYS_CODE_PREFIXES):
        return True
    return isinstance(value, str) and "\n" in value


RUN_MODULE_PREFIX = "__sweeps_run_"
_run_module_ids = itertools.count()
_registered: list[str] = []


def build_namespace(data_dir: Path | str | None = None) -> dict[str, Any]:
    """The names FORMAT.md promises to a run's code; a new dict every call, so nothing leaks.

    The worker's plugins' names come first, so the built-in names below win a clash; the
    names of the user's project (its loader's imports, worker/project.py) come last and win, as
    they would in the project itself. The dict is the `__dict__` of a module in sys.modules:
    torch.compile finds a function's globals by importing their `__name__` (torch 2.11 fails on
    a name that is not there; 2.14 falls back).
    """
    from worker import project
    from worker.plugins import exported_names

    module = types.ModuleType(f"{RUN_MODULE_PREFIX}{next(_run_module_ids)}__")
    module.__dict__.update(
        {
            **exported_names(),
            "__builtins__": builtins,
            "__name__": module.__name__,
            "torch": torch,
            "nn": nn,
            "F": F,
            "VT": VT,
            "VF": VF,
            "torchvision": torchvision,
            "np": np,
            "math": math,
            "random": random,
            "fmnist_dataset": functools.partial(datasets.fmnist_dataset, data_dir=data_dir),
            "mnist_dataset": functools.partial(datasets.mnist_dataset, data_dir=data_dir),
            "ClassLogitsDataset": datasets.ClassLogitsDataset,
            "EncoderConv2d": models.EncoderConv2d,
            "TrivialAugmentWidePerSample": augment.TrivialAugmentWidePerSample,
            "TrivialAugmentWideOnDevice": augment.TrivialAugmentWideOnDevice,
            **project.exported_names(),
        }
    )
    _register(module)
    return module.__dict__


def _register(module: types.ModuleType) -> None:
    """Only the newest run's namespace stays registered: a process trains one run at a time, and
    an older one (its data included) must not live on in sys.modules."""
    while _registered:
        sys.modules.pop(_registered.pop(), None)
    sys.modules[module.__name__] = module
    _registered.append(module.__name__)


def run_code(code: str, namespace: dict[str, Any], *, where: str) -> Any:
    """Execute `code` as statements in `namespace`; the last statement, an expression, is the value.

    Classes and functions the code defines get `namespace` as their globals, so run globals stay
    visible inside their methods, and names one block defines are seen by later blocks. A last
    statement that assigns gives the assigned value, as nn-experiments takes it.
    """
    from shared.sweepfile.config_checks import gives_value
    from worker.project import failures_note

    filename = f"<{where}>"
    tree = ast.parse(code, filename=filename, mode="exec")
    if not tree.body or not gives_value(tree.body[-1]):
        raise ValueError(f"'{where}': the last statement must be an expression giving the value")
    value = tree.body.pop().value  # type: ignore[attr-defined]
    try:
        exec(compile(tree, filename, "exec"), namespace)  # noqa: S102 - running the user's file is the job
        return eval(compile(ast.Expression(value), filename, "eval"), namespace)  # noqa: S307
    except NameError as exc:
        note = failures_note()
        if note:  # the name may be one a failed project module would have given
            raise NameError(f"{exc}{note}") from exc
        raise


def evaluate_globals(values: dict[str, Any] | None, namespace: dict[str, Any]) -> None:
    """`globals`: string values are code evaluated in order (later see earlier); others as is."""
    for name, value in (values or {}).items():
        if isinstance(value, str):
            value = run_code(value, namespace, where=f"globals.{name}")
        namespace[name] = value


def resolve_code_scalars(config: dict[str, Any], data_dir: Path | str | None = None) -> dict:
    """The configuration with its scalar keys written as code (`seed: |` ...) evaluated, in a
    namespace of their own with the run's globals; unchanged when there are none."""
    from shared.sweepfile.run_config import is_code_value

    keys = [k for k, v in config.items() if is_code_value(k, v)]
    if not keys:
        return config
    ns = build_namespace(data_dir)
    evaluate_globals(config.get("globals"), ns)
    return {**config, **{k: run_code(str(config[k]), ns, where=k) for k in keys}}


def config_value(config: dict[str, Any], key: str, namespace: dict[str, Any]) -> Any:
    """A key's value: run as code where FORMAT.md says it is code, else used as is."""
    value = config.get(key)
    if value is not None and is_code(key, value):
        return run_code(str(value), namespace, where=key)
    return value
