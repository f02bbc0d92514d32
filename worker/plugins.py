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


def check_importable(modules: tuple[str, ...]) -> str | None:
    """One line saying which plugin fails to import and why, or None when all import.

    Each is imported in a throwaway interpreter: the worker's parent must not load torch
    (its forked children would inherit it), and most plugins import torch.
    """
    for module in modules:
        done = subprocess.run(
            [sys.executable, "-c", f"import importlib; importlib.import_module({module!r})"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
            reason = lines[-1] if lines else f"exit status {done.returncode}"
            return f"plugin {module!r} (SWEEPS_PLUGINS or entry point) cannot be imported: {reason}"
    return None


def load(configured: str) -> dict[str, ModuleType]:
    """Import the plugins (once per process); ImportError names the plugin."""
    for module in plugin_modules(configured):
        if module not in _loaded:
            try:
                _loaded[module] = importlib.import_module(module)
            except Exception as exc:
                raise ImportError(f"plugin {module!r} cannot be imported: {exc}") from exc
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


def resolve(name: str) -> Any:
    """The object a dotted name gives in a loaded plugin; ValueError saying why not."""
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
    """A plugin's trainer class; it must subclass the engine's Trainer."""
    found = resolve(name)
    if not (isinstance(found, type) and issubclass(found, base)):
        raise ValueError(
            f"trainer {name!r} from a plugin must be a subclass of worker.engine.trainer.Trainer"
        )
    return found
