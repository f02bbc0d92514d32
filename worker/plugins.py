"""Plugins on a worker: checked at start, imported in each run's process, names handed to runs.

A plugin is a module (usually a package) whose public names (its `__all__`, else every name
not starting with `_`) become visible to a run's code, as nn-experiments' star imports make
its helpers visible; the module itself is visible by its top-level name too, so code can say
`mypkg.datasets.Thing(...)`. A `trainer` named `mypkg.sub.MyTrainer` is resolved in it. Names
the API cannot check are resolved here, before training starts, with a clear error.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from types import ModuleType
from typing import Any

from shared.plugins import plugin_modules, provided_by

_loaded: dict[str, ModuleType] = {}
_failed: dict[str, str] = {}  # module -> why it cannot be imported


def check_importable(modules: tuple[str, ...]) -> list[str]:
    """One line per plugin that fails to import, saying why (empty when all import).

    Each is imported in a throwaway interpreter: the worker's parent must not load torch
    (its forked children would inherit it), and most plugins import torch.
    """
    problems = []
    for module in modules:
        done = subprocess.run(
            [sys.executable, "-c", f"import importlib; importlib.import_module({module!r})"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
            reason = lines[-1] if lines else f"exit status {done.returncode}"
            problems.append(f"plugin {module!r} (SWEEPS_PLUGINS or entry point) cannot be "
                            f"imported: {reason}; runs that use it will fail")  # fmt: skip
    return problems


def load(configured: str) -> dict[str, ModuleType]:
    """Import the plugins (once per process). One that fails is remembered, not raised: only
    a run that names it fails (resolve() says why)."""
    for module in plugin_modules(configured):
        if module not in _loaded and module not in _failed:
            try:
                _loaded[module] = importlib.import_module(module)
            except Exception as exc:
                _failed[module] = f"{type(exc).__name__}: {exc}"
    return dict(_loaded)


def exported_names() -> dict[str, Any]:
    """The names the loaded plugins give a run's code."""
    names: dict[str, Any] = {}
    for module_name, module in _loaded.items():
        top = module_name.split(".")[0]
        names[top] = sys.modules[top]
        public = getattr(module, "__all__", None)
        if public is None:
            public = [n for n in vars(module) if not n.startswith("_")]
        names.update({n: getattr(module, n) for n in public})
    return names


def provides(name: str) -> bool:
    """Whether `name` lives under one of the worker's plugins (imported or failed)."""
    return provided_by(name, (*_loaded, *_failed)) is not None


def resolve(name: str) -> Any:
    """The object a dotted name gives in a loaded plugin; ValueError saying why not."""
    failed = provided_by(name, tuple(_failed))
    if failed is not None:
        raise ValueError(f"{name!r}: plugin {failed!r} cannot be imported: {_failed[failed]}")
    owner = provided_by(name, tuple(_loaded))
    if owner is None:
        exported = exported_names()
        if name in exported:
            return exported[name]
        plugins = ", ".join(_loaded) or "none"
        raise ValueError(f"{name!r} is not built in and no plugin on this worker provides it "
                         f"(plugins: {plugins})")  # fmt: skip
    module_path, _, attribute = name.rpartition(".")
    try:
        module = importlib.import_module(module_path) if module_path else _loaded[owner]
        return getattr(module, attribute)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"{name!r} cannot be found in plugin {owner!r}: {exc}") from None


def trainer_class(name: str, base: type) -> type:
    """A plugin's trainer class: a subclass of the engine's Trainer, or a class written against
    nn-experiments' Trainer API (one with `train()`; worker/engine/project_trainer.py)."""
    found = resolve(name)
    if not (
        isinstance(found, type)
        and (issubclass(found, base) or callable(getattr(found, "train", None)))
    ):
        raise ValueError(
            f"trainer {name!r} from a plugin must be a subclass of worker.engine.trainer.Trainer "
            "or a trainer class with a train() method (nn-experiments' Trainer API)"
        )
    return found
