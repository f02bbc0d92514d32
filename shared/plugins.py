"""Which Python packages a worker offers to sweeps as plugins, known without importing them.

Plugins come from `SWEEPS_PLUGINS` (comma-separated module names) and from installed
distributions' entry points in the `sweeps.plugins` group (the entry point's value is the
module). The API reads the names only, to accept a `trainer` a plugin provides; it never
imports them. Workers import them (worker/plugins.py).
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.settings import Settings

ENTRY_POINT_GROUP = "sweeps.plugins"


def plugin_modules(configured: str) -> tuple[str, ...]:
    """Module names from the setting and from entry points, in that order, without repeats."""
    names = [name.strip() for name in configured.split(",") if name.strip()]
    return tuple(dict.fromkeys([*names, *_entry_point_modules()]))


@cache
def _entry_point_modules() -> tuple[str, ...]:
    # Scanning every installed distribution's metadata costs milliseconds, and submit and preview
    # ask on every request; what is installed does not change under a running process.
    return tuple(ep.value.split(":")[0].strip() for ep in entry_points(group=ENTRY_POINT_GROUP))


def provided_by(name: str, modules: tuple[str, ...]) -> str | None:
    """The plugin module a dotted name lives under (`pkg.sub.Thing` under `pkg`), or None."""
    return next((m for m in modules if name == m or name.startswith(m + ".")), None)


def parse_options(settings: Settings) -> dict[str, Any]:
    """What parsing a sweep needs to know of the workers' code: the plugin modules and the
    user's project (SpecError when SWEEPS_PROJECT_ROOT names no folder)."""
    from shared.project import ProjectError, project_at
    from shared.sweepfile.errors import SpecError

    try:
        project = project_at(settings.project_root)
    except ProjectError as exc:
        raise SpecError(str(exc)) from None
    return {"plugins": plugin_modules(settings.plugins), "project": project}
