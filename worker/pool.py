"""The worker's process pool: Celery's prefork pool, with a finished run's process replaced at
once rather than within five seconds.

Each run trains in a fresh process (`worker_max_tasks_per_child=1`). Billiard replaces an
exited process when it notices the exit, or at its pool-maintenance timer, every 5 s; the
exit is often noticed only by the timer, and a tiny run (0.5 s) then waited 2-5 s for its
process (BENCHMARKS.md, "Scale"). Checking every POOL_CHECK_SECONDS costs a few list scans.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery.concurrency.asynpool import AsynPool
from celery.concurrency.prefork import TaskPool

POOL_CHECK_SECONDS = 0.1


class _PromptAsynPool(AsynPool):  # type: ignore[misc]
    @property
    def timers(self) -> dict[Callable[..., Any], float]:
        return {self.maintain_pool: POOL_CHECK_SECONDS}


class RunPool(TaskPool):  # type: ignore[misc]
    Pool = _PromptAsynPool
