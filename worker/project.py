"""The user's project on a worker: on the import path, its loader's names, its trainers.

`load(root)` puts the checkout first on `sys.path` and executes its experiment loader's import
statements (shared/project.py reads them) one at a time into a dict: the names a run's code
sees, as nn-experiments' star imports give them. A statement that fails is kept with its error
rather than raised: only a run that needs one of its names fails, and its error says which
module could not be imported and why. `check_at_start` does the same in a throwaway
interpreter, so the worker's parent can report failures once without importing torch.
"""

from __future__ import annotations

import builtins
import importlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.project import PATH_PLACEHOLDER, SCHEDULER_MODULE, Project, project_at


@dataclass
class Loaded:
    project: Project
    names: dict[str, Any] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)  # module -> "Error: message"


_loaded: Loaded | None = None


def load(root: Path | str | None) -> Loaded | None:
    """Import the project's loader names (once per process); None without a project."""
    global _loaded
    project = project_at(root)
    if project is None:
        return None
    if _loaded is not None and _loaded.project == project:
        return _loaded
    if str(project.root) not in sys.path:
        sys.path.insert(0, str(project.root))
    names: dict[str, Any] = {"__builtins__": builtins, "PROJECT_ROOT": project.root}
    failures: dict[str, str] = {}
    for item in project.loader_imports:
        try:
            exec(item.statement, names)  # noqa: S102 - the loader's own import line
        except Exception as exc:
            failures.setdefault(item.module, _one_line(exc))
    names.pop("__builtins__", None)
    _loaded = Loaded(project, names, failures)
    return _loaded


def current() -> Loaded | None:
    return _loaded


def exported_names() -> dict[str, Any]:
    """The loader's names for a run's code (empty without a project)."""
    return dict(_loaded.names) if _loaded is not None else {}


def failures_note() -> str:
    """A sentence naming the project modules that failed to import, or ''."""
    if _loaded is None or not _loaded.failures:
        return ""
    listed = "; ".join(f"{m} ({e})" for m, e in _loaded.failures.items())
    return f" (project modules that failed to import on this worker: {listed})"


def resolve_trainer(name: str) -> Any:
    """The project's class a `trainer` names: dotted, imported; plain, a loader name."""
    if _loaded is None:
        raise ValueError(f"trainer {name!r} is not built in, and this worker has no project "
                         "(SWEEPS_PROJECT_ROOT) or plugin that provides it")  # fmt: skip
    module_name, _, attribute = name.rpartition(".")
    if not module_name:
        if name in _loaded.names:
            return _loaded.names[name]
        raise ValueError(f"trainer {name!r} is not a name of the project's loader "
                         f"({_loaded.project.root}){failures_note()}")  # fmt: skip
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ValueError(
            f"trainer {name!r}: module {module_name!r} cannot be imported: {_one_line(exc)}"
        ) from None
    if not hasattr(module, attribute):
        raise ValueError(f"trainer {name!r}: module {module_name!r} has no {attribute!r}")
    return getattr(module, attribute)


def scheduler_class(name: str) -> Any | None:
    """The project's scheduler of that name (src.scheduler), or None: looked up before torch's,
    as nn-experiments does."""
    if _loaded is None or _loaded.project.module_file(SCHEDULER_MODULE) is None:
        return None
    try:
        module = importlib.import_module(SCHEDULER_MODULE)
    except Exception as exc:
        raise ValueError(
            f"scheduler {name!r}: the project's {SCHEDULER_MODULE} cannot be imported: "
            f"{_one_line(exc)}"
        ) from None
    return getattr(module, name, None)


def fill_path(value: Any) -> Any:
    """`value` with every `${PATH}` in its strings replaced by the project root."""
    if isinstance(value, str):
        if PATH_PLACEHOLDER not in value:
            return value
        if _loaded is None:
            raise ValueError("the file uses ${PATH}, but this worker has no SWEEPS_PROJECT_ROOT")
        return value.replace(PATH_PLACEHOLDER, str(_loaded.project.root))
    if isinstance(value, list):
        return [fill_path(v) for v in value]
    if isinstance(value, dict):
        return {k: fill_path(v) for k, v in value.items()}
    return value


_CHECK = """
import json, sys
from worker.project import load
loaded = load(sys.argv[1])
print(json.dumps(loaded.failures if loaded else {}))
"""


def check_at_start(root: Path | str | None) -> list[str]:
    """One line per project module that fails to import (checked in a throwaway interpreter,
    so the worker's parent stays free of torch); ProjectError for a root that is no folder."""
    project = project_at(root)
    if project is None or not project.loader_imports:
        return []
    done = subprocess.run(
        [sys.executable, "-c", _CHECK, str(project.root)],
        capture_output=True, text=True, check=False, env=dict(os.environ),
    )  # fmt: skip
    try:
        failures = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        return [f"the project's loader names cannot be read: {lines[-1] if lines else 'no output'}"]
    return [
        f"project module {module!r} cannot be imported: {error}; runs that use it will fail"
        for module, error in failures.items()
    ]


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
