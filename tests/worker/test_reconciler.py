"""The reconciler against a real Redis: reading kombu's queues, re-enqueueing what was lost."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from celery import Celery
from sqlalchemy import update
from sqlalchemy.orm import Session

from shared.db.models import Run, RunStatus, utcnow
from shared.db.session import make_engine
from shared.queue import RUNS_QUEUE, TRAIN_TASK, enqueue_run, get_client
from shared.settings import Settings, get_settings
from tests.worker.conftest import MakeRuns
from worker.celery_app import create_celery
from worker.reconciler import Reconciler, broker_run_ids, reconcile_once


@pytest.fixture
def app(
    settings_env: dict[str, str], broker_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Celery]:
    monkeypatch.setenv("SWEEPS_BROKER_URL", broker_url)
    monkeypatch.setenv("SWEEPS_QUEUED_GRACE_SECONDS", "10")
    get_settings.cache_clear()
    get_client.cache_clear()
    app = create_celery()
    yield app
    get_client.cache_clear()
    app.close()


def _redis(app: Celery) -> tuple[object, object]:
    conn = app.connection_for_write()
    return conn, conn.default_channel.client


def test_broker_run_ids_sees_waiting_prioritised_and_unacked_messages(app: Celery) -> None:
    enqueue_run(5)
    enqueue_run(7)
    get_client().send_task(TRAIN_TASK, args=[9], queue=RUNS_QUEUE, priority=6)
    get_client().send_task("something.else", args=[11], queue=RUNS_QUEUE)
    conn, client = _redis(app)
    with conn:
        assert broker_run_ids(client) == {5, 7, 9}
        # A delivered, unacknowledged message (a worker holds it while it trains) still counts.
        queue = conn.SimpleQueue(RUNS_QUEUE)
        message = queue.get(timeout=5)
        assert broker_run_ids(client) == {5, 7, 9}
        message.ack()
        assert len(broker_run_ids(client)) == 2
        queue.close()


def test_reconcile_once_reenqueues_only_what_the_broker_lacks(
    app: Celery, session: Session, make_runs: MakeRuns
) -> None:
    settings: Settings = get_settings()
    waiting, lost, fresh, expired = make_runs(4)
    long_ago = utcnow() - timedelta(seconds=60)
    session.execute(update(Run).where(Run.id.in_([waiting, lost])).values(enqueued_at=long_ago))
    session.execute(
        update(Run)
        .where(Run.id == expired)
        .values(status=RunStatus.RUNNING, lease_owner="dead", lease_expires_at=long_ago)
    )
    session.commit()
    enqueue_run(waiting)  # its message is still in Redis: no second one
    conn, client = _redis(app)
    sent: list[int] = []
    with conn:
        report = reconcile_once(
            session, settings=settings, ids_in_broker=lambda: broker_run_ids(client),
            enqueue=lambda run_id: (sent.append(run_id), enqueue_run(run_id)),
        )  # fmt: skip
        assert (report.requeued_expired, report.reenqueued_lost) == ([expired], [lost])
        assert sorted(sent) == sorted([expired, lost])
        # One message each for the waiting, the lost and the expired run; none for the fresh.
        assert broker_run_ids(client) == {waiting, lost, expired}
        assert client.llen(RUNS_QUEUE) == 3
        assert fresh not in sent
        # Re-enqueued runs start a new grace period: the next pass sends nothing.
        again = reconcile_once(
            session, settings=settings, ids_in_broker=lambda: broker_run_ids(client),
            enqueue=sent.append,
        )  # fmt: skip
        assert not again.changed and len(sent) == 2


def test_one_pass_per_period_across_workers(
    app: Celery, db_url: str, session: Session, make_runs: MakeRuns
) -> None:
    settings = get_settings().model_copy(update={"reconcile_seconds": 30.0})
    first, second = Reconciler(app, settings), Reconciler(create_celery(settings), settings)
    for reconciler in (first, second):
        reconciler.engine = make_engine(db_url)
    assert first.pass_once() is not None
    assert second.pass_once() is None  # the Redis lock: another worker did this period's pass
    for reconciler in (first, second):
        assert reconciler.engine is not None
        reconciler.engine.dispose()
