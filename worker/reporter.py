"""The engine's `report` callback: buffers events and writes them from a background thread.

The training loop never waits on the database. A flusher thread wakes every
`metrics_flush_seconds` (sooner after a checkpoint) and, in one transaction, renews the
run's lease (the heartbeat), stores progress and provenance, and upserts the buffered metric
points. While the database is unreachable the points stay in memory and every tick tries
again; once it is back nothing is lost. The same transaction tells us whether the run was
cancelled or taken from us (lease lost), which `should_stop()` hands to the engine.
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

from shared.db.models import RunStatus
from shared.db.runs import (
    MetricPoint,
    finish_run,
    record_progress,
    record_provenance,
    renew_lease,
    upsert_metrics,
)
from shared.db.session import session_scope

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

    # --- the engine side ------------------------------------------------------------------

    def __call__(self, event: str, **payload: Any) -> None:
        """Record one engine event; never blocks on the database."""
        with self._lock:
            if event in ("metrics", "replay"):  # replay: points again after a resume
                self._pending.extend(payload["points"])
            elif event == "progress":
                self._progress = int(payload["inputs"])
            elif event == "provenance":
                self._provenance = dict(payload["info"])
            elif event == "phases":
                self.phases.update(payload["phases"])
        if event in ("checkpoint", "provenance"):
            # Points up to a checkpoint should be durable as soon as the checkpoint is.
            self._wake.set()

    def should_stop(self) -> bool:
        return self.cancel_requested or self.lease_lost or self.storage_error is not None

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
        """One transaction: renew the lease, store progress, provenance and buffered points."""
        with self._lock:
            points, self._pending = self._pending, []
            progress, provenance = self._progress, self._provenance
        heartbeat_due = time.monotonic() - self._last_renewal >= self.heartbeat_seconds
        if not (points or progress is not None or provenance or heartbeat_due or force_heartbeat):
            return
        started = time.perf_counter()
        try:
            with self._sessions() as session:
                lease = renew_lease(session, self.run_id, self.owner, self.lease_seconds)
                if lease.owned:
                    self._write(session, points, progress, provenance)
        except BaseException:
            self._restore(points, progress, provenance)
            raise
        with self._lock:
            written = self.phases.get("metric_writes", 0.0) + time.perf_counter() - started
            self.phases["metric_writes"] = round(written, 3)
        self._last_renewal = time.monotonic()
        self.cancel_requested = lease.cancel_requested
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
