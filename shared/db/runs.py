"""Worker-side queries on runs: claim, lease, metrics, outcome, and the reconciler's queries.

Every state change is one conditional UPDATE, so two workers (or a worker and the
reconciler) racing on the same run cannot both win. Functions take `session` and never
commit: the task wrapper owns the transaction.

Times come from the worker's clock (`utcnow()`); hosts must agree to well within
`lease_seconds` (NTP is plenty).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from shared.db import holds, links
from shared.db.models import FINISHED_STATUSES, LatestMetric, Metric, Run, RunStatus, utcnow
from shared.domain.commands import update_sweep_status

MetricPoint = tuple[str, int, float]


@dataclass(frozen=True)
class Lease:
    """What a heartbeat learns: is the run still ours, and has someone asked it to stop."""

    owned: bool
    cancel_requested: bool

    @property
    def should_stop(self) -> bool:
        return not self.owned or self.cancel_requested


def claim_run(
    session: Session,
    run_id: int,
    owner: str,
    lease_seconds: float,
    *,
    host: str | None = None,
    max_attempts: int | None = None,
) -> Run | None:
    """Take a run for training, or None when it is not ours to train.

    One UPDATE: a queued run, or a running run whose lease expired (its worker died), becomes
    running under `owner`. A duplicate delivery finds the lease live and changes nothing; a
    cancelled or finished run is skipped. `max_attempts` refuses to re-claim an expired run
    that has already been tried that often (the reconciler then fails it).
    """
    now = utcnow()
    expired = and_(
        Run.status == RunStatus.RUNNING,
        Run.lease_expires_at < now,
        Run.cancel_requested.is_(False),
    )
    if max_attempts is not None:
        expired = and_(expired, Run.attempts < max_attempts)
    # Our own claim again: a retry after a commit whose reply was lost must not orphan the run.
    ours = and_(Run.status == RunStatus.RUNNING, Run.lease_owner == owner)
    # A queued run linked to another one (links.py) is trained by that one, never here.
    queued = and_(Run.status == RunStatus.QUEUED, Run.reused_from_id.is_(None))
    result = session.execute(
        update(Run)
        .where(Run.id == run_id, or_(queued, expired, ours))
        .values(
            status=RunStatus.RUNNING,
            lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            heartbeat_at=now,
            attempts=Run.attempts + 1,
            started_at=now,
            finished_at=None,
            worker_host=host,
            # A retried run starts clean; a stale request must not stop the new attempt.
            cancel_requested=False,
            error=None,
            traceback=None,
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return session.get(Run, run_id, populate_existing=True)


def renew_lease(session: Session, run_id: int, owner: str, lease_seconds: float) -> Lease:
    """Heartbeat: extend our lease if the run is still ours; report a cancel request."""
    now = utcnow()
    row = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.lease_owner == owner, Run.status == RunStatus.RUNNING)
        .values(lease_expires_at=now + timedelta(seconds=lease_seconds), heartbeat_at=now)
        .returning(Run.cancel_requested)
        .execution_options(synchronize_session=False)
    ).first()
    if row is None:
        return Lease(owned=False, cancel_requested=False)
    return Lease(owned=True, cancel_requested=bool(row[0]))


def record_progress(session: Session, run_id: int, owner: str, inputs_seen: int) -> bool:
    """Store how many training inputs the run has seen; False when the run is not ours."""
    result = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.lease_owner == owner, Run.status == RunStatus.RUNNING)
        .values(inputs_seen=inputs_seen)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def record_provenance(session: Session, run_id: int, owner: str, info: dict[str, Any]) -> bool:
    """Store what produced the run (config, seed, versions, device, host)."""
    values: dict[str, Any] = {"provenance": info}
    if info.get("device"):
        # "cuda (NVIDIA H100 80GB HBM3)": the kind for filters, the model for people.
        name = info.get("device_name")
        device = f"{info['device']} ({name})" if name and name != info["device"] else info["device"]
        values["device"] = str(device)[:200]
    if info.get("host"):
        values["worker_host"] = str(info["host"])[:200]
    result = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.lease_owner == owner, Run.status == RunStatus.RUNNING)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def upsert_metrics(session: Session, run_id: int, points: Iterable[MetricPoint]) -> int:
    """Write (key, step, value) points idempotently; returns the number of distinct points.

    A point written twice (a retried flush, a run resumed from a checkpoint) overwrites itself.
    `latest_metrics` moves only forward: an older step never replaces a newer one. A NaN is
    stored as value 0 with `is_nan` set, on both databases (SQLite would read a NaN REAL back
    as NULL, which the NOT NULL column refuses); an infinity is stored as it is.
    """
    postgres = session.get_bind().dialect.name == "postgresql"
    # Last value wins within a batch; Postgres refuses to update one row twice in a statement.
    unique: dict[tuple[str, int], float] = {}
    for key, step, value in points:
        unique[(str(key), int(step))] = float(value)
    if not unique:
        return 0
    keys = [key for key, _ in unique]
    steps = [step for _, step in unique]
    nans = [math.isnan(value) for value in unique.values()]
    values = [0.0 if nan else value for value, nan in zip(unique.values(), nans, strict=True)]
    if postgres:
        # One statement of four arrays: one round trip per flush, and faster than
        # executemany (BENCHMARKS.md).
        session.execute(
            _PG_UPSERT_METRICS,
            {"run_id": run_id, "keys": keys, "steps": steps, "values": values, "nans": nans},
        )
    else:
        stmt = sqlite.insert(Metric)
        stmt = stmt.on_conflict_do_update(
            index_elements=["run_id", "key", "step"],
            set_={"value": stmt.excluded.value, "is_nan": stmt.excluded.is_nan},
        )
        rows = [
            {"run_id": run_id, "key": k, "step": s, "value": v, "is_nan": n}
            for k, s, v, n in zip(keys, steps, values, nans, strict=True)
        ]
        session.execute(stmt, rows)
    _upsert_latest(session, run_id, zip(keys, steps, values, nans, strict=True), postgres=postgres)
    return len(values)


_PG_UPSERT_METRICS = text(
    "INSERT INTO metrics (run_id, key, step, value, is_nan) "
    "SELECT :run_id, k, s, v, n FROM unnest(CAST(:keys AS text[]), CAST(:steps AS bigint[]), "
    "CAST(:values AS float8[]), CAST(:nans AS boolean[])) AS p(k, s, v, n) "
    "ON CONFLICT (run_id, key, step) DO UPDATE SET value = excluded.value, is_nan = excluded.is_nan"
)


def _upsert_latest(
    session: Session,
    run_id: int,
    points: Iterable[tuple[str, int, float, bool]],
    *,
    postgres: bool,
) -> None:
    latest: dict[str, tuple[int, float, bool]] = {}
    for key, step, value, nan in points:
        best = latest.get(key)
        if best is None or step >= best[0]:
            latest[key] = (step, value, nan)
    insert = postgresql.insert if postgres else sqlite.insert
    stmt = insert(LatestMetric).values(
        [
            {"run_id": run_id, "key": k, "step": s, "value": v, "is_nan": n}
            for k, (s, v, n) in sorted(latest.items())
        ]
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["run_id", "key"],
        set_={
            "step": stmt.excluded.step,
            "value": stmt.excluded.value,
            "is_nan": stmt.excluded.is_nan,
        },
        where=LatestMetric.step <= stmt.excluded.step,
    )
    session.execute(stmt)


def finish_run(
    session: Session,
    run_id: int,
    owner: str,
    status: RunStatus,
    *,
    error: str | None = None,
    traceback: str | None = None,
    inputs_seen: int | None = None,
    train_seconds: float | None = None,
    phases: dict[str, float] | None = None,
) -> bool:
    """Record the outcome, only if we still hold the run; then close its sweep if all ended.

    `phases` is where the attempt's time went ({phase: seconds}); the latest attempt's is kept.
    """
    if status not in FINISHED_STATUSES or status is RunStatus.REUSED:
        raise ValueError(f"finish_run needs succeeded, failed or cancelled, not {status}")
    values: dict[str, Any] = {
        "status": status,
        "finished_at": utcnow(),
        "lease_expires_at": None,
        "error": error,
        "traceback": traceback,
    }
    if inputs_seen is not None:
        values["inputs_seen"] = inputs_seen
    if train_seconds is not None:
        values["train_seconds"] = train_seconds
    if phases is not None:
        values["phases"] = phases
    sweep_id = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.lease_owner == owner, Run.status == RunStatus.RUNNING)
        .values(**values)
        .returning(Run.sweep_id)
        .execution_options(synchronize_session=False)
    ).scalar()
    if sweep_id is None:
        return False
    if status is RunStatus.FAILED:
        holds.hold_if_failing(session, sweep_id)
    update_sweep_status(session, [sweep_id, *links.settle_links(session, [run_id])])
    return True


# --- reconciler --------------------------------------------------------------------------


@dataclass
class ExpiredLeases:
    """Runs whose worker stopped heart-beating, by what the reconciler did with them."""

    requeued: list[int] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)


def expire_leases(session: Session, *, max_attempts: int) -> ExpiredLeases:
    """Take back running runs whose lease expired: re-queue, or cancel/fail them.

    The caller enqueues `requeued` after commit. A cancel requested before the worker died
    ends the run as cancelled; a run that has lost its worker `max_attempts` times is failed,
    since a process that keeps dying (e.g. killed for memory) would otherwise loop forever.
    """
    now = utcnow()
    expired = and_(Run.status == RunStatus.RUNNING, Run.lease_expires_at < now)
    done = ExpiredLeases()
    done.cancelled = _update_ids(
        session,
        and_(expired, Run.cancel_requested.is_(True)),
        status=RunStatus.CANCELLED, finished_at=now, lease_expires_at=None,
    )  # fmt: skip
    done.failed = _update_ids(
        session,
        and_(expired, Run.attempts >= max_attempts),
        status=RunStatus.FAILED, finished_at=now, lease_expires_at=None,
        error=f"the worker running this run was lost {max_attempts} times "
        "(killed, e.g. out of memory, or its host died); giving up",
    )  # fmt: skip
    done.requeued = _update_ids(
        session,
        expired,
        status=RunStatus.QUEUED, lease_owner=None, lease_expires_at=None, enqueued_at=now,
    )  # fmt: skip
    if done.cancelled or done.failed:
        sweep_ids = session.scalars(
            select(Run.sweep_id).where(Run.id.in_(done.cancelled + done.failed)).distinct()
        ).all()
        linked = links.settle_links(session, done.cancelled + done.failed)
        update_sweep_status(session, [*sweep_ids, *linked])
    return done


def _update_ids(session: Session, where: Any, **values: Any) -> list[int]:
    ids = session.scalars(
        update(Run)
        .where(where)
        .values(**values)
        .returning(Run.id)
        .execution_options(synchronize_session=False)
    ).all()
    return sorted(ids)


def stale_queued_runs(session: Session, *, older_than_seconds: float) -> list[int]:
    """Queued runs enqueued longer ago than the grace period (candidates for a lost message)."""
    cutoff = utcnow() - timedelta(seconds=older_than_seconds)
    enqueued = Run.enqueued_at.is_not(None)
    rows = session.scalars(
        select(Run.id)
        .where(
            Run.status == RunStatus.QUEUED,
            Run.reused_from_id.is_(None),  # linked runs wait for their source, not a task
            or_(
                and_(enqueued, Run.enqueued_at < cutoff),
                and_(~enqueued, Run.created_at < cutoff),
            ),
        )
        .order_by(Run.id)
    )
    return list(rows)
