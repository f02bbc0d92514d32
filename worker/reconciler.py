"""The reconciler: the database is the source of truth, the queue only a hint.

Every `reconcile_seconds` it
- takes back running runs whose lease expired (their worker died): re-queued and re-enqueued,
  or cancelled (a cancel was pending), or failed after `max_attempts` lost workers;
- re-enqueues queued runs older than `queued_grace_seconds` whose message is in neither the
  Redis queue nor the unacknowledged set (Redis restarted empty, or an enqueue failed after
  the API's commit);
- marks sweeps finished once all their runs ended.

Where it runs: a daemon thread in every worker's parent process, not a celery-beat service.
It lives exactly as long as something can train (no workers, nothing to hand runs to), there
is no extra service to deploy or forget, and a Redis lock (`SET NX PX`) lets one worker per
period do the pass. Running it twice at once would still be safe: every change is a
conditional UPDATE and a duplicate message is refused by the claim, so a run never trains
twice at the same time. It uses its own unpooled database engine so that the children the
parent forks never inherit an open connection.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from shared.db.session import commit, make_engine
from shared.domain.runs import enqueue_after_commit, expire_leases, stale_queued_runs
from shared.domain.search import continue_searches, sweeps_of
from shared.domain.sweeps import update_sweep_status
from shared.queue import RUNS_QUEUE, TRAIN_TASK
from shared.settings import Settings

log = logging.getLogger(__name__)

LOCK_KEY = "sweeps:reconciler"
# kombu's Redis transport keeps a queue per priority step, named "<queue>\x06\x16<priority>"
# (priority 0 is the bare name), and unacknowledged messages in the hash "unacked".
PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)


@dataclass
class ReconcileReport:
    """What one pass did (run ids)."""

    requeued_expired: list[int] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    reenqueued_lost: list[int] = field(default_factory=list)
    finished_sweeps: list[int] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(getattr(self, name) for name in self.__dataclass_fields__)


def reconcile_once(
    session: Session,
    *,
    settings: Settings,
    ids_in_broker: Callable[[], set[int]],
    enqueue: Callable[[int], None],
) -> ReconcileReport:
    """One pass, committed; its messages are sent after the commit (never ahead of a row)."""
    report = ReconcileReport()
    expired = expire_leases(session, max_attempts=settings.max_attempts)
    report.requeued_expired, report.cancelled, report.failed = (
        expired.requeued, expired.cancelled, expired.failed,
    )  # fmt: skip
    stale = stale_queued_runs(session, older_than_seconds=settings.queued_grace_seconds)
    if stale:
        present = ids_in_broker()
        report.reenqueued_lost = [run_id for run_id in stale if run_id not in present]
    if report.failed:  # a failed trial counts: its search asks for the next ones
        continue_searches(session, sweeps_of(session, report.failed))
    report.finished_sweeps = update_sweep_status(session)
    enqueue_after_commit(session, report.requeued_expired + report.reenqueued_lost, enqueue)
    commit(session)
    return report


def train_run_ids(raw_messages: Iterable[bytes | str]) -> set[int]:
    """Run ids of "runs.train" messages as kombu stores them in Redis (lists or unacked)."""
    ids: set[int] = set()
    for raw in raw_messages:
        try:
            message = json.loads(raw)
            if isinstance(message, list):  # unacked entries are [message, exchange, routing_key]
                message = message[0]
            if message.get("headers", {}).get("task") != TRAIN_TASK:
                continue
            body = message["body"]
            if message.get("properties", {}).get("body_encoding") == "base64":
                body = base64.b64decode(body)
            args = json.loads(body)[0]  # protocol 2 body: [args, kwargs, embed]
            ids.add(int(args[0]))
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            log.warning("reconciler: skipped an unreadable broker message")
    return ids


def broker_run_ids(client: Any, queue: str = RUNS_QUEUE, unacked_key: str = "unacked") -> set[int]:
    """Run ids with a message waiting in `queue` or delivered but not yet acknowledged."""
    raw: list[bytes] = []
    for priority in PRIORITY_STEPS:
        name = f"{queue}{PRIORITY_SEPARATOR}{priority}" if priority else queue
        raw.extend(client.lrange(name, 0, -1))
    raw.extend(client.hvals(unacked_key))
    return train_run_ids(raw)


class Reconciler(threading.Thread):
    """Runs `reconcile_once` every `reconcile_seconds` until stopped."""

    def __init__(self, app: Celery, settings: Settings) -> None:
        super().__init__(name="sweeps-reconciler", daemon=True)
        self.app = app
        self.settings = settings
        self.stopping = threading.Event()
        self.engine: Engine | None = None

    def run(self) -> None:
        # NullPool: no connection stays open between passes for a forked child to inherit.
        self.engine = make_engine(self.settings.database_url, poolclass=NullPool)
        try:
            while not self.stopping.wait(self.settings.reconcile_seconds):
                try:
                    self.pass_once()
                except Exception:
                    # Database or Redis down: try again next period.
                    log.warning("reconciler pass failed; retrying later", exc_info=True)
        finally:
            self.engine.dispose()

    def pass_once(self) -> ReconcileReport | None:
        assert self.engine is not None
        with self.app.connection_for_write() as conn:
            channel = conn.default_channel
            client = channel.client
            lock_ms = max(1, int(self.settings.reconcile_seconds * 900))
            if not client.set(LOCK_KEY, "1", nx=True, px=lock_ms):
                return None  # another worker did this period's pass
            unacked_key = getattr(channel, "unacked_key", "unacked")
            with Session(self.engine) as session:
                report = reconcile_once(
                    session,
                    settings=self.settings,
                    ids_in_broker=lambda: broker_run_ids(client, RUNS_QUEUE, unacked_key),
                    enqueue=lambda run_id: self._enqueue(conn, run_id),
                )
        if report.changed:
            log.info("reconciler: %s", report)
        return report

    def _enqueue(self, conn: Any, run_id: int) -> None:
        self.app.send_task(TRAIN_TASK, args=[run_id], queue=RUNS_QUEUE, connection=conn)


_current: Reconciler | None = None


def start_reconciler(app: Celery, settings: Settings) -> Reconciler:
    global _current
    if _current is None or not _current.is_alive():
        _current = Reconciler(app, settings)
        _current.start()
    return _current


def stop_reconciler(timeout: float = 5.0) -> None:
    global _current
    if _current is not None:
        _current.stopping.set()
        _current.join(timeout)
        _current = None
