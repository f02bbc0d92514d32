"""The engine's `report` callback: buffers events and writes them from a background thread.

The training loop never waits on the database (but for early stopping's rungs,
worker/rung_judge.py). A writer thread wakes every `metrics_flush_seconds` (sooner after a
checkpoint) and, in one transaction, renews the run's lease (worker/heartbeat.py), stores
progress and provenance, upserts the buffered metric points and judges the rungs they reached.
While the database is unreachable the points stay in memory and every tick tries again; once it
is back nothing is lost. What the transaction learns (cancelled, lease lost, pruned) is what
`should_stop()` hands to the engine.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

from shared.db.metric_writes import MetricPoint, upsert_metrics
from shared.db.models import RunStatus
from shared.db.session import session_scope
from shared.domain.runs import finish_run, record_progress, record_provenance
from worker.heartbeat import Heartbeat
from worker.rung_judge import RungJudge

log = logging.getLogger(__name__)

SessionFactory = Callable[[], AbstractContextManager[Session]]

# How long the final write (last points + outcome) keeps retrying while the database is down.
# Long: the alternative is retraining the run from its last checkpoint.
FINAL_WRITE_PATIENCE_SECONDS = 3600.0


def is_transient(exc: BaseException) -> bool:
    """A lost or refused connection (worth retrying), not a bad statement."""
    if isinstance(exc, OperationalError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


class Outage:
    """Logs a database outage once when it starts and once when it ends, not every tick."""

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        self.since: float | None = None

    def failed(self, exc: BaseException) -> None:
        if self.since is None:
            self.since = time.monotonic()
            log.warning("run %s: database unreachable, keeping points in memory and retrying: %s",
                        self.run_id, exc)  # fmt: skip

    def succeeded(self) -> None:
        if self.since is not None:
            log.info("run %s: database reachable again; buffered points written", self.run_id)
            self.since = None


class Buffer:
    """What the engine reported and the database has not stored yet."""

    def __init__(self) -> None:
        self.points: list[MetricPoint] = []
        self.progress: int | None = None
        self.provenance: dict[str, Any] | None = None

    def take(self) -> tuple[list[MetricPoint], int | None, dict[str, Any] | None]:
        points, self.points = self.points, []
        return points, self.progress, self.provenance

    def restore(self, points: list[MetricPoint], progress: int | None,
                provenance: dict[str, Any] | None) -> None:  # fmt: skip
        self.points[:0] = points
        if self.progress is None:
            self.progress = progress
        if self.provenance is None:
            self.provenance = provenance

    def stored(self, progress: int | None, provenance: dict[str, Any] | None) -> None:
        """Forget the progress and provenance just stored, unless newer ones came meanwhile."""
        if self.progress == progress:
            self.progress = None
        if self.provenance is provenance:
            self.provenance = None


class Reporter:
    """Callable as `report(event, **payload)`; use as a context manager around training."""

    def __init__(
        self,
        run_id: int,
        owner: str,
        *,
        lease_seconds: float,
        flush_seconds: float,
        heartbeat_seconds: float,
        session_factory: SessionFactory = session_scope,
        judge: RungJudge | None = None,
    ) -> None:
        self.run_id = run_id
        self.owner = owner
        self.tick = max(0.05, min(flush_seconds, heartbeat_seconds))
        self.heartbeat = Heartbeat(run_id, owner, lease_seconds=lease_seconds,
                                   every_seconds=heartbeat_seconds)  # fmt: skip
        self.judge = judge
        self._sessions = session_factory
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._buffer = Buffer()
        self._thread: threading.Thread | None = None
        self._outage = Outage(run_id)
        # {phase: seconds}: the engine's (the "phases" event), the task's, and our own writes;
        # stored with the outcome.
        self.phases: dict[str, float] = {}
        self.storage_error: BaseException | None = None
        self.points_written = 0

    # --- the engine side ------------------------------------------------------------------

    def __call__(self, event: str, **payload: Any) -> None:
        """Record one engine event; never blocks on the database (but at a rung's checkpoint)."""
        with self._lock:
            if event in ("metrics", "replay"):  # replay: points again after a resume
                self._buffer.points.extend(payload["points"])
                if self.judge is not None:
                    self.judge.note(payload["points"], judge=event == "metrics")
            elif event == "progress":
                self._buffer.progress = int(payload["inputs"])
            elif event == "provenance":
                self._buffer.provenance = dict(payload["info"])
            elif event == "phases":
                self.phases.update(payload["phases"])
        if event in ("checkpoint", "provenance"):
            self._durable_now()

    def _durable_now(self) -> None:
        """Points up to a checkpoint should be durable as soon as the checkpoint is; at a
        rung's validation training waits for the judgement (the one wait on the database)."""
        judging = (self._thread is not None and self.judge is not None
                   and self.judge.expect_judgement())  # fmt: skip
        self._wake.set()
        if judging:
            assert self.judge is not None
            self.judge.wait()

    def should_stop(self) -> bool:
        return (
            self.heartbeat.should_stop
            or self.storage_error is not None
            or self.prune_reason is not None
        )

    @property
    def cancel_requested(self) -> bool:
        return self.heartbeat.cancel_requested

    @property
    def lease_lost(self) -> bool:
        return self.heartbeat.lease_lost

    @property
    def prune_reason(self) -> str | None:
        return self.judge.prune_reason if self.judge is not None else None

    # --- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> Reporter:
        self._thread = threading.Thread(
            target=self._loop, name=f"reporter-run-{self.run_id}", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the writer thread (points still pending are written by `finish`)."""
        self._closing.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _loop(self) -> None:
        while not self._closing.is_set():
            self._wake.wait(self.tick)
            self._wake.clear()
            if self._closing.is_set():
                return
            try:
                self.write_pending()
                self._outage.succeeded()
            except Exception as exc:
                if is_transient(exc):
                    self._outage.failed(exc)
                else:
                    log.exception("run %s: cannot store results; stopping the run", self.run_id)
                    self.storage_error = exc

    # --- writing --------------------------------------------------------------------------

    def write_pending(self, *, force_heartbeat: bool = False) -> None:
        """One transaction: renew the lease, store progress, provenance and buffered points,
        and judge the rungs those points reached."""
        with self._lock:  # the lock the engine's events take: a rung is due with its points
            points, progress, provenance = self._buffer.take()
            due = self.judge.take_due() if self.judge is not None else []
        if not (points or progress is not None or provenance or self.heartbeat.due
                or force_heartbeat):  # fmt: skip
            return
        reason = None
        started = time.perf_counter()
        try:
            with self._sessions() as session:
                lease = self.heartbeat.renew(session)
                if lease.owned:
                    self._write(session, points, progress, provenance)
                    reason = self.judge.judge(session, due) if self.judge is not None else None
        except BaseException:
            with self._lock:
                self._buffer.restore(points, progress, provenance)
            if self.judge is not None:
                self.judge.put_back(due)
            raise
        with self._lock:
            written = self.phases.get("metric_writes", 0.0) + time.perf_counter() - started
            self.phases["metric_writes"] = round(written, 3)
        self.heartbeat.note(lease)
        if self.judge is not None:
            self.judge.settle(reason, due)
        # A lost lease: someone else holds the run now; its attempt writes the points from the
        # shared checkpoint on, so ours are dropped.
        if lease.owned:
            self.points_written += len(points)
            with self._lock:
                self._buffer.stored(progress, provenance)

    def _write(
        self,
        session: Session,
        points: list[MetricPoint],
        progress: int | None,
        provenance: dict[str, Any] | None,
    ) -> None:
        if provenance:
            record_provenance(session, self.run_id, self.owner, provenance)
        if progress is not None:
            record_progress(session, self.run_id, self.owner, progress)
        if points:
            upsert_metrics(session, self.run_id, points)

    def discard_pending(self) -> None:
        """Forget buffered points (they cannot be stored; see `storage_error`)."""
        with self._lock:
            self._buffer.points = []

    def finish(
        self,
        status: RunStatus,
        *,
        error: str | None = None,
        traceback: str | None = None,
        summary: dict[str, Any] | None = None,
        patience_seconds: float = FINAL_WRITE_PATIENCE_SECONDS,
    ) -> bool:
        """Write the last points and the outcome together, retrying while the database is down.

        Returns False when the run was no longer ours (nothing recorded).
        """
        self.close()
        summary = summary or {}
        for attempt in Retrying(
            retry=retry_if_exception(is_transient),
            wait=wait_exponential(multiplier=0.2, max=5),
            stop=stop_after_delay(patience_seconds),
            reraise=True,
        ):
            with attempt:
                with self._lock:
                    points, progress, provenance = self._buffer.take()
                try:
                    with self._sessions() as session:
                        if not self.heartbeat.renew(session).owned:
                            return False
                        self._write(session, points, progress, provenance)
                        return self._record_outcome(session, status, error, traceback,
                                                    summary.get("inputs", progress),
                                                    summary.get("train_seconds"))  # fmt: skip
                except BaseException:
                    with self._lock:
                        self._buffer.restore(points, progress, provenance)
                    raise
        raise AssertionError("unreachable: Retrying either returns or raises")

    def _record_outcome(self, session: Session, status: RunStatus, error: str | None,
                        traceback: str | None, inputs: Any, seconds: Any) -> bool:  # fmt: skip
        return finish_run(
            session, self.run_id, self.owner, status,
            error=error, traceback=traceback,
            inputs_seen=int(inputs) if inputs is not None else None,
            train_seconds=float(seconds) if seconds is not None else None,
            phases=dict(self.phases) or None,
        )  # fmt: skip
