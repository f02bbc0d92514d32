"""Enqueue training tasks by name, so the API never imports worker code."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache, partial

from celery import Celery

from shared.settings import get_settings

TRAIN_TASK = "runs.train"
RUNS_QUEUE = "runs"


@lru_cache
def get_client(broker_url: str | None = None) -> Celery:
    """A producer-only Celery app; made on first use, not at import."""
    app = Celery("sweeps-client", broker=broker_url or get_settings().broker_url)
    app.conf.task_default_queue = RUNS_QUEUE
    app.conf.broker_connection_retry_on_startup = True
    return app


def enqueue_run(run_id: int, *, broker_url: str | None = None) -> None:
    """Queue one training task carrying only the run id; call after the run row is committed."""
    get_client(broker_url).send_task(TRAIN_TASK, args=[run_id], queue=RUNS_QUEUE)


def sender(broker_url: str | None = None) -> Callable[[int], None]:
    """`enqueue_run` bound to a broker, for `shared.db.session.enqueue_after_commit`."""
    return partial(enqueue_run, broker_url=broker_url)
