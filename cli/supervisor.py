"""The embedded stack's restart policy: on one machine the CLI is the supervisor that docker
compose's `restart: unless-stopped` is on a GPU host.

A worker or API child that dies is started again after a backoff (1, 2, 4, 8 ... s, at most
30 s) while the others keep running; a run the dead worker was training is re-queued by the
lease/reconciler path and resumes from its checkpoint. A child that dies
`CRASH_LOOP_DEATHS` times within `CRASH_LOOP_WINDOW` seconds is not going to get better by
itself (a wrong setting, a broken install), so the stack stops and says why. Redis is not
restarted: the broker's socket and queued messages belong to it, and a stack without it is
not worth keeping up. `stop_group` ends a child's whole process group (Celery's pool
children with it), on a restart and on shutdown.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

RESTARTABLE = frozenset({"api", "worker"})
CRASH_LOOP_DEATHS = 5
CRASH_LOOP_WINDOW = 60.0
MAX_BACKOFF = 30.0


@dataclass
class Child:
    """One process of the stack, how to start it again, and when it died recently."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    command: list[str] = field(default_factory=list)
    deaths: list[float] = field(default_factory=list)
    # Set while a dead child waits out its backoff: monotonic time of its next start.
    restart_at: float | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])

    @property
    def restartable(self) -> bool:
        return self.name in RESTARTABLE

    def record_death(self, now: float) -> float | None:
        """Note a death at `now`; the backoff before the next start, or None for a crash loop."""
        self.deaths = [t for t in self.deaths if now - t < CRASH_LOOP_WINDOW] + [now]
        if len(self.deaths) >= CRASH_LOOP_DEATHS:
            return None
        return min(MAX_BACKOFF, 2.0 ** (len(self.deaths) - 1))


def exit_description(code: int | None) -> str:
    """`code -9 (SIGKILL)` for a signal, `code 1` otherwise."""
    if code is not None and code < 0:
        try:
            return f"code {code} ({signal.Signals(-code).name})"
        except ValueError:
            pass
    return f"code {code}"


def crash_loop_message(child: Child) -> str:
    tail = child.log_tail()
    return (
        f"the {child.name} process died {len(child.deaths)} times within "
        f"{CRASH_LOOP_WINDOW:.0f} s (last exit {exit_description(child.process.returncode)}); "
        f"stopping the stack. See {child.log_path}" + (f"\n{tail}" if tail else "")
    )


def died_message(child: Child) -> str:
    tail = child.log_tail()
    return (
        f"the {child.name} process exited with {exit_description(child.process.returncode)}; "
        f"see {child.log_path}" + (f"\n{tail}" if tail else "")
    )


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_group(
    pgid: int, *, timeout: float, process: subprocess.Popen[bytes] | None = None
) -> None:
    """SIGTERM the process group, wait, then SIGKILL whatever is left of it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None:
            process.poll()
        if not group_alive(pgid):
            break
        time.sleep(0.05)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    if process is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)
