"""The worker's pool: a fresh process per run, and a finished run's process replaced at the
pool's short check interval rather than billiard's 5 s (worker/pool.py)."""

from __future__ import annotations

from types import SimpleNamespace

from celery.concurrency import get_implementation
from celery.concurrency.prefork import TaskPool

from shared.settings import Settings
from worker.celery_app import create_celery
from worker.pool import POOL_CHECK_SECONDS, RunPool


def test_the_worker_uses_the_prompt_prefork_pool_one_run_per_process() -> None:
    app = create_celery(Settings(broker_url="redis://127.0.0.1:1/0"))
    pool = get_implementation(app.conf.worker_pool)
    assert pool is RunPool and issubclass(pool, TaskPool)
    assert app.conf.worker_max_tasks_per_child == 1

    def maintain() -> None: ...

    timers = RunPool.Pool.timers.fget(SimpleNamespace(maintain_pool=maintain))
    assert timers == {maintain: POOL_CHECK_SECONDS} and POOL_CHECK_SECONDS < 5
