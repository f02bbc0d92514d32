"""Engine and session factories, and the unit of work: the one place that commits.

Task messages are tied to the commit: `send_after_commit` records run ids on the session, and
an after-commit hook sends them, so a worker never receives an id whose row it cannot read yet,
and a rolled-back transaction sends nothing. The API and the reconciler use the same path
(through `shared.domain.runs.enqueue_after_commit`, which notes the sent runs enqueued).
Nothing connects at import time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from shared.db.chunks import chunked
from shared.settings import get_settings


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # pre_ping: a restarted Postgres leaves dead pooled connections behind.
    return create_engine(url, pool_pre_ping=True, **kwargs)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the API read while a worker writes metrics; foreign keys are off by default.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


@lru_cache
def get_engine(url: str | None = None) -> Engine:
    return make_engine(url or get_settings().database_url)


def get_sessionmaker(url: str | None = None) -> sessionmaker[Session]:
    return sessionmaker(get_engine(url), expire_on_commit=False)


@contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction at the edge: commit on success, roll back on any error, always close."""
    session = factory()
    try:
        yield session
        commit(session)
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A unit of work for task wrappers and scripts on the configured database."""
    with unit_of_work(get_sessionmaker(url)) as session:
        yield session


# ---------------------------------------------------------------- enqueue after commit

log = logging.getLogger("sweeps.queue")
Send = Callable[[int], None]
# What to write, in a new transaction, for the ids that were sent.
AfterSend = Callable[[Session, list[int]], None]
_PENDING = "sweeps.enqueue.pending"  # list[(send, run ids, then)] of the open transaction
_OUTCOME = "sweeps.enqueue.outcome"  # Enqueued of the last commit
SEND_BATCH = 500  # ids per `many` call: what one failure can leave unsent (and unmarked)


@dataclass
class Enqueued:
    """What the last commit sent: run ids, and a warning per send that failed."""

    sent: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    then: list[tuple[AfterSend, list[int]]] = field(default_factory=list)


def send_after_commit(
    session: Session, run_ids: Sequence[int], send: Send, *, then: AfterSend | None = None
) -> None:
    """Call `send(run_id)` for each id once this transaction commits (nothing if it rolls
    back), then `then(session, sent ids)` in a transaction of its own."""
    if run_ids:
        session.connection()  # begin the transaction the ids belong to, if nothing has yet
        session.info.setdefault(_PENDING, []).append((send, list(run_ids), then))


def commit(session: Session) -> Enqueued:
    """Commit; the hook sends the recorded tasks; then write what the senders asked for.

    A run whose message could not be sent is left out of `then`: it stays queued without
    `enqueued_at`, and the reconciler sends it after its grace period.
    """
    session.commit()
    outcome: Enqueued = session.info.pop(_OUTCOME, None) or Enqueued()
    for then, sent in outcome.then:
        then(session, sent)
    if outcome.then:
        session.commit()
    return outcome


@event.listens_for(Session, "after_commit")
def _send_recorded(session: Session) -> None:
    pending: list[tuple[Send, list[int], AfterSend | None]] = session.info.pop(_PENDING, [])
    if not pending:
        return
    outcome: Enqueued = session.info.setdefault(_OUTCOME, Enqueued())
    total = sum(len(ids) for _, ids, _ in pending)
    for send, run_ids, then in pending:
        sent: list[int] = []
        failed = _send_each(send, run_ids, sent)
        outcome.sent.extend(sent)
        if then is not None and sent:
            outcome.then.append((then, sent))
        if failed is not None:
            log.warning("enqueue failed for run %s: %s", failed[0], type(failed[1]).__name__)
            outcome.warnings.append(
                f"the task queue is unreachable ({type(failed[1]).__name__}); "
                f"{total - len(outcome.sent)} queued runs will be sent by the reconciler"
            )
            return  # the broker is down: the rest would fail the same way


def _send_each(send: Send, run_ids: list[int], sent: list[int]) -> tuple[int, Exception] | None:
    """Send each id, noting it in `sent`; (id, error) of the first send that failed.

    A sender with `many` (shared.queue.Sender) sends SEND_BATCH ids in one round trip; a
    failed batch counts as unsent as a whole (a duplicate message is refused by the claim)."""
    many = getattr(send, "many", None)
    size = SEND_BATCH if many is not None else 1
    for chunk in chunked(run_ids, size):
        try:
            many(chunk) if many is not None else send(chunk[0])
        except Exception as exc:  # noqa: BLE001 - any broker failure is handled the same way
            return chunk[0], exc
        sent.extend(chunk)
    return None


@event.listens_for(Session, "after_soft_rollback")
def _drop_recorded(session: Session, _previous: Any) -> None:
    if not session.in_transaction():  # the whole transaction, not a savepoint within it
        session.info.pop(_PENDING, None)
