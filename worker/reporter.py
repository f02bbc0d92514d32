"""The engine's `report` callback: buffers events and writes them from a background thread.

The training loop never waits on the database (but for early_stop's rungs, below). A
flusher thread wakes every `metrics_flush_seconds` (sooner after a checkpoint) and, in one
transaction, renews the run's lease (the heartbeat), stores progress and provenance, and
upserts the buffered metric points. While the database is unreachable the points stay in
memory and every tick tries again; once it is back nothing is lost. The same transaction
tells us whether the run was cancelled or taken from us (lease lost), which `should_stop()`
hands to the engine.

With `early_stop`, the same transaction judges each validation that reaches a rung against the
sweep's stored curves (`judge_rung`, shared/domain/runs.py). The engine's checkpoint call for
that validation waits for the judgement (up to RUNG_WAIT_SECONDS), so a pruned run stops at
the next poll, a few steps after its rung's checkpoint, and `prune_reason` says why.
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
from shared.domain.runs import (
    finish_run,
    judge_rung,
    record_progress,
    record_provenance,
    renew_lease,
)
from shared.sweepfile.early_stop import EarlyStop

log = logging.getLogger(__name__)

SessionFactory = Callable[[], AbstractContextManager[Session]]

# How long the final write (last points + outcome) keeps retrying while the database is down.
# Long: the alternative is retraining the run from its last checkpoint.
FINAL_WRITE_PATIENCE_SECONDS = 3600.0
# How long the engine's checkpoint call waits for a rung's judgement (early_stop), so a pruned
# run stops right after the rung's checkpoint; past that, training goes on and the judgement
# stops it at a later poll.
RUNG_WAIT_SECONDS = 30.0


def is_transient(exc: BaseException) -> bool:
    """A lost or refused connection (worth retrying), not a bad statement."""
    if isinstance(exc, OperationalError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


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
        early_stop: EarlyStop | None = None,
        sweep_id: int | None = None,
    ) -> None:
        self.run_id = run_id
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.tick = max(0.05, min(flush_seconds, heartbeat_seconds))
        self.heartbeat_seconds = heartbeat_seconds
        self._sessions = session_factory
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._pending: list[MetricPoint] = []
        self._progress: int | None = None
        self._provenance: dict[str, Any] | None = None
        # {phase: seconds}: the engine's (the "phases" event), the task's, and our own writes;
        # stored with the outcome.
        self.phases: dict[str, float] = {}
        self._last_renewal = time.monotonic()
        self._thread: threading.Thread | None = None
        self._outage_since: float | None = None
        # What the heartbeat learned; read by should_stop() from the training thread.
        self.cancel_requested = False
        self.lease_lost = False
        self.storage_error: BaseException | None = None
        self.points_written = 0
        # Early stopping: rungs reached and not yet judged, and rungs already settled.
        self.early_stop = early_stop if sweep_id is not None else None
        self.sweep_id = sweep_id
        self._rungs_due: list[tuple[int, float]] = []
        self._rungs_seen: set[int] = set()
        self._judged = threading.Event()
        self.prune_reason: str | None = None

    # --- the engine side ------------------------------------------------------------------

    def __call__(self, event: str, **payload: Any) -> None:
        """Record one engine event; never blocks on the database."""
        with self._lock:
            if event in ("metrics", "replay"):  # replay: points again after a resume
                self._pending.extend(payload["points"])
                self._note_rungs(payload["points"], judge=event == "metrics")
            elif event == "progress":
                self._progress = int(payload["inputs"])
            elif event == "provenance":
                self._provenance = dict(payload["info"])
            elif event == "phases":
                self.phases.update(payload["phases"])
        if event in ("checkpoint", "provenance"):
            with self._lock:
                judging = bool(self._rungs_due) and self._thread is not None
            if judging:
                self._judged.clear()
            # Points up to a checkpoint should be durable as soon as the checkpoint is.
            self._wake.set()
            if judging:  # a rung's validation: the one place training waits on the database
                self._judged.wait(RUNG_WAIT_SECONDS)

    def should_stop(self) -> bool:
        return (
            self.cancel_requested
            or self.lease_lost
            or self.storage_error is not None
            or self.prune_reason is not None
        )

    def _note_rungs(self, points: list[Any], *, judge: bool) -> None:
        """Queue the first validation at each new rung; replayed ones were judged before."""
        rule = self.early_stop
        if rule is None:
            return
        for key, step, value in points:
            rung = rule.rung_of(int(step)) if key == rule.metric else None
            if rung is None or rung in self._rungs_seen:
                continue
            self._rungs_seen.add(rung)
            if judge:
                self._rungs_due.append((rung, float(value)))

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
        """Stop the flusher thread (points still pending are written by `finish`)."""
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
                self.flush()
                if self._outage_since is not None:
                    log.info(
                        "run %s: database reachable again; buffered points written", self.run_id
                    )
                    self._outage_since = None
            except Exception as exc:
                if is_transient(exc):
                    if self._outage_since is None:  # once per outage, not every tick
                        self._outage_since = time.monotonic()
                        log.warning("run %s: database unreachable, keeping points in memory "
                                    "and retrying: %s", self.run_id, exc)  # fmt: skip
                else:
                    log.exception("run %s: cannot store results; stopping the run", self.run_id)
                    self.storage_error = exc

    # --- writing --------------------------------------------------------------------------

    def flush(self, *, force_heartbeat: bool = False) -> None:
        """One transaction: renew the lease, store progress, provenance and buffered points
        (and, with early_stop, judge the rungs those points reached)."""
        with self._lock:
            points, self._pending = self._pending, []
            progress, provenance = self._progress, self._provenance
            due, self._rungs_due = self._rungs_due, []
        heartbeat_due = time.monotonic() - self._last_renewal >= self.heartbeat_seconds
        if not (points or progress is not None or provenance or heartbeat_due or force_heartbeat):
            return
        reason = None
        started = time.perf_counter()
        try:
            with self._sessions() as session:
                lease = renew_lease(session, self.run_id, self.owner, self.lease_seconds)
                if lease.owned:
                    self._write(session, points, progress, provenance)
                    reason = self._judge(session, due)
        except BaseException:
            self._restore(points, progress, provenance)
            with self._lock:
                self._rungs_due[:0] = due
            raise
        with self._lock:
            written = self.phases.get("metric_writes", 0.0) + time.perf_counter() - started
            self.phases["metric_writes"] = round(written, 3)
        self._last_renewal = time.monotonic()
        self.cancel_requested = lease.cancel_requested
        if reason is not None:  # only once the prune mark is committed
            log.info("run %s: %s", self.run_id, reason)
            self.prune_reason = reason
        if due:
            self._judged.set()
        if not lease.owned:
            # Someone else holds the run now (our lease expired); its attempt writes the
            # points from the shared checkpoint on, so ours are dropped.
            self.lease_lost = True
        else:
            self.points_written += len(points)
            with self._lock:
                if self._progress == progress:
                    self._progress = None
                if self._provenance is provenance:
                    self._provenance = None

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

    def _judge(self, session: Session, due: list[tuple[int, float]]) -> str | None:
        """Why the run is pruned at the first of the `due` rungs that prunes it, else None."""
        rule = self.early_stop
        if rule is None or self.sweep_id is None or self.prune_reason is not None:
            return None
        for rung, value in due:
            reason = judge_rung(session, self.run_id, self.sweep_id, rule, rung, value)
            if reason is not None:
                return reason
        return None

    def discard_pending(self) -> None:
        """Forget buffered points (they cannot be stored; see `storage_error`)."""
        with self._lock:
            self._pending = []

    def _restore(
        self, points: list[MetricPoint], progress: int | None, provenance: dict[str, Any] | None
    ) -> None:
        with self._lock:
            self._pending[:0] = points
            if self._progress is None:
                self._progress = progress
            if self._provenance is None:
                self._provenance = provenance

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
                    points, self._pending = self._pending, []
                    progress, provenance = self._progress, self._provenance
                try:
                    with self._sessions() as session:
                        lease = renew_lease(session, self.run_id, self.owner, self.lease_seconds)
                        if not lease.owned:
                            return False
                        self._write(session, points, progress, provenance)
                        inputs = summary.get("inputs", progress)
                        seconds = summary.get("train_seconds")
                        return finish_run(
                            session, self.run_id, self.owner, status,
                            error=error, traceback=traceback,
                            inputs_seen=int(inputs) if inputs is not None else None,
                            train_seconds=float(seconds) if seconds is not None else None,
                            phases=dict(self.phases) or None,
                        )  # fmt: skip
                except BaseException:
                    self._restore(points, progress, provenance)
                    raise
        raise AssertionError("unreachable: Retrying either returns or raises")
