"""Where a run's wall time goes: named phases, each a sum of seconds (stored in `runs.phases`).

Phases on the run's critical path add up to the run's wall time; the SVC fits run in background
threads, so their `svc_fit*` phases overlap training and are not part of that sum (the time the
run waited for them at its end is `svc_wait`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

# Phases that overlap others (background threads); the rest are sequential.
BACKGROUND_PHASES = frozenset({"svc_fit", "svc_fit_heldout", "metric_writes"})


class Phases:
    """Thread-safe {phase: seconds}; `timed(name)` adds the time spent in its block."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seconds: dict[str, float] = {}

    def add(self, name: str, seconds: float) -> None:
        with self._lock:
            self._seconds[name] = self._seconds.get(name, 0.0) + max(0.0, seconds)

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - start)

    def as_dict(self) -> dict[str, float]:
        """Seconds per phase, rounded to the millisecond (JSON-ready)."""
        with self._lock:
            return {name: round(seconds, 3) for name, seconds in self._seconds.items()}
