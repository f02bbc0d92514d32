"""Enqueue training tasks by name, so the API never imports worker code."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from celery import Celery

from shared.settings import get_settings

TRAIN_TASK = "runs.train"
RUNS_QUEUE = "runs"
# Messages per Redis pipeline: one round trip each, and a lost batch is this many runs at most
# (their rows stay without enqueued_at, so the reconciler sends them after its grace period).
BATCH = 500


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


def enqueue_runs(run_ids: Sequence[int], *, broker_url: str | None = None) -> None:
    """Queue one task per run, `BATCH` messages to a Redis pipeline (kombu's publish batch):
    10,000 runs cost 20 round trips instead of 10,000. Raises on the first batch that fails;
    the batches before it were sent."""
    app = get_client(broker_url)
    with app.producer_or_acquire() as producer, producer.batch(max_size=BATCH):
        for run_id in run_ids:
            app.send_task(TRAIN_TASK, args=[run_id], queue=RUNS_QUEUE, producer=producer)


@dataclass(frozen=True)
class Sender:
    """`enqueue_run` bound to a broker, for `shared.domain.runs.enqueue_after_commit`; `many`
    sends a batch at once."""

    broker_url: str | None = None

    def __call__(self, run_id: int) -> None:
        enqueue_run(run_id, broker_url=self.broker_url)

    def many(self, run_ids: Sequence[int]) -> None:
        enqueue_runs(run_ids, broker_url=self.broker_url)


def sender(broker_url: str | None = None) -> Sender:
    return Sender(broker_url)
