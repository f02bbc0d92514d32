"""A run's life, in one place: every change of its state and the predicates they rest on.

queued -> running (`claim_run`, heartbeat `renew_lease`) -> succeeded, failed, cancelled or
pruned (`finish_run`, `judge_rung`); a lost worker's run is re-queued, cancelled or failed
(`expire_leases`); `cancel_*` and `retry_runs` are the user's. A queued run whose configuration
trains elsewhere is *linked* to that run (`find_live`) and gets no task message; when its source
ends, `settle_links` gives it the source's outcome (succeeded -> reused, else the same status).

A change that races (two workers, a worker and the reconciler, a user and a worker) is one
conditional UPDATE, so one side wins. Functions flush, never commit (the edge commits). Times
are the caller's `utcnow()`; hosts must agree to well within `lease_seconds` (NTP is plenty).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.orm import Session

from shared.db.chunks import chunked
from shared.db.models import (
    FINISHED_STATUSES,
    LIVE_STATUSES,
    RETRYABLE_STATUSES,
    Metric,
    Run,
    RunStatus,
    utcnow,
)
from shared.db.pruning import PRUNED_AT_KEY, rung_values
from shared.db.session import Send, send_after_commit
from shared.domain.errors import Conflict
from shared.domain.holds import hold_if_failing
from shared.domain.reads import get_run, get_sweep
from shared.domain.sweeps import runs_ended, update_sweep_status
from shared.sweepfile.early_stop import EarlyStop


def trains_itself() -> ColumnElement[bool]:
    """SQL: the run is not linked to another run that trains its configuration."""
    return Run.reused_from_id.is_(None)


def is_linked() -> ColumnElement[bool]:
    """SQL: a queued run waiting on another run's training."""
    return and_(Run.status == RunStatus.QUEUED, Run.reused_from_id.is_not(None))


def needs_message() -> ColumnElement[bool]:
    """SQL: a queued run that a task message must carry (a linked run gets none)."""
    return and_(Run.status == RunStatus.QUEUED, trains_itself())


# --- queued: messages ------------------------------------------------------------------


def enqueue_after_commit(session: Session, run_ids: Sequence[int], send: Send) -> None:
    """Send each run's task message once this transaction commits, then note it enqueued."""
    send_after_commit(session, run_ids, send, then=mark_enqueued)


def mark_enqueued(session: Session, run_ids: Sequence[int]) -> None:
    """Note the runs' messages sent: the reconciler re-sends one only after its grace period."""
    now = utcnow()
    for chunk in chunked(list(run_ids)):
        session.execute(
            update(Run)
            .where(Run.id.in_(chunk), Run.status == RunStatus.QUEUED)
            .values(enqueued_at=now)
            .execution_options(synchronize_session=False)
        )


def stale_queued_runs(session: Session, *, older_than_seconds: float) -> list[int]:
    """Runs needing a message, enqueued longer ago than the grace period (lost messages?)."""
    cutoff = utcnow() - timedelta(seconds=older_than_seconds)
    enqueued = Run.enqueued_at.is_not(None)
    old = or_(and_(enqueued, Run.enqueued_at < cutoff), and_(~enqueued, Run.created_at < cutoff))
    return list(session.scalars(select(Run.id).where(needs_message(), old).order_by(Run.id)))


# --- running: claim and heartbeat ------------------------------------------------------


# A new attempt starts clean: a stale cancel request must not stop it, nor an old error stay.
_CLEAN_ATTEMPT: dict[str, Any] = {"cancel_requested": False, "error": None, "traceback": None}


@dataclass(frozen=True)
class Lease:
    """What a heartbeat learns: is the run still ours, and has someone asked it to stop."""

    owned: bool
    cancel_requested: bool

    @property
    def should_stop(self) -> bool:
        return not self.owned or self.cancel_requested


def claim_run(
    session: Session, run_id: int, owner: str, lease_seconds: float,
    *, host: str | None = None, max_attempts: int | None = None,
) -> Run | None:  # fmt: skip
    """Take a run for training (None: not ours to train). A queued run, or a running one whose
    lease expired (its worker died), becomes running under `owner`; a duplicate delivery finds
    the lease live; a cancelled, finished or linked run is skipped. `max_attempts` refuses an
    expired run tried that often (the reconciler then fails it)."""
    now = utcnow()
    expired = and_(Run.status == RunStatus.RUNNING, Run.lease_expires_at < now,
                   Run.cancel_requested.is_(False))  # fmt: skip
    if max_attempts is not None:
        expired = and_(expired, Run.attempts < max_attempts)
    # Our own claim again: a retry after a commit whose reply was lost must not orphan the run.
    ours = and_(Run.status == RunStatus.RUNNING, Run.lease_owner == owner)
    result = session.execute(
        update(Run)
        .where(Run.id == run_id, or_(needs_message(), expired, ours))
        .values(
            status=RunStatus.RUNNING,
            lease_owner=owner,
            heartbeat_at=now,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            attempts=Run.attempts + 1,
            started_at=now,
            finished_at=None,
            worker_host=host,
            **_CLEAN_ATTEMPT,
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return session.get(Run, run_id, populate_existing=True)


def _ours(run_id: int, owner: str) -> ColumnElement[bool]:
    return and_(Run.id == run_id, Run.lease_owner == owner, Run.status == RunStatus.RUNNING)


def renew_lease(session: Session, run_id: int, owner: str, lease_seconds: float) -> Lease:
    """Heartbeat: extend our lease if the run is still ours; report a cancel request."""
    now = utcnow()
    row = session.execute(
        update(Run)
        .where(_ours(run_id, owner))
        .values(lease_expires_at=now + timedelta(seconds=lease_seconds), heartbeat_at=now)
        .returning(Run.cancel_requested)
        .execution_options(synchronize_session=False)
    ).first()
    if row is None:
        return Lease(owned=False, cancel_requested=False)
    return Lease(owned=True, cancel_requested=bool(row[0]))


def record_progress(session: Session, run_id: int, owner: str, inputs_seen: int) -> bool:
    """Store how many training inputs the run has seen; False when the run is not ours."""
    return _update_ours(session, run_id, owner, inputs_seen=inputs_seen)


def record_provenance(session: Session, run_id: int, owner: str, info: dict[str, Any]) -> bool:
    """Store what produced the run (config, seed, versions, device, host)."""
    values: dict[str, Any] = {"provenance": info}
    if device := info.get("device"):
        # "cuda (NVIDIA H100 80GB HBM3)": the kind for filters, the model for people.
        name = info.get("device_name")
        values["device"] = str(f"{device} ({name})" if name and name != device else device)[:200]
    if info.get("host"):
        values["worker_host"] = str(info["host"])[:200]
    return _update_ours(session, run_id, owner, **values)


def _update_ours(session: Session, run_id: int, owner: str, **values: Any) -> bool:
    result = session.execute(
        update(Run)
        .where(_ours(run_id, owner))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def finish_run(
    session: Session, run_id: int, owner: str, status: RunStatus,
    *, error: str | None = None, traceback: str | None = None, inputs_seen: int | None = None,
    train_seconds: float | None = None, phases: dict[str, float] | None = None,
) -> bool:  # fmt: skip
    """Record the outcome if we still hold the run, settle the runs linked to it, close sweeps
    whose runs all ended. `phases`: where the attempt's time went ({phase: seconds})."""
    if status not in FINISHED_STATUSES or status is RunStatus.REUSED:
        raise ValueError(f"finish_run needs succeeded, failed or cancelled, not {status}")
    values: dict[str, Any] = {"status": status, "finished_at": utcnow(), "lease_expires_at": None,
                              "error": error, "traceback": traceback}  # fmt: skip
    optional = {"inputs_seen": inputs_seen, "train_seconds": train_seconds, "phases": phases}
    values.update({key: value for key, value in optional.items() if value is not None})
    sweep_id = session.execute(
        update(Run)
        .where(_ours(run_id, owner))
        .values(**values)
        .returning(Run.sweep_id)
        .execution_options(synchronize_session=False)
    ).scalar()
    if sweep_id is None:
        return False
    hold_if_failing(session, sweep_id, status)
    sweep_ids = [sweep_id, *settle_links(session, [run_id])]
    runs_ended(session, sweep_ids, ask_next=status is not RunStatus.CANCELLED)
    return True


def judge_rung(
    session: Session, run_id: int, sweep_id: int, rule: EarlyStop, rung: int, value: float
) -> str | None:
    """None when the run goes on past `rung`, else why it is pruned, with its mark written
    (a retry then trains it to its full budget without judging it again)."""
    inputs = rule.rung_inputs(rung)
    values = rung_values(session, sweep_id, rule.metric, inputs)
    values[run_id] = value  # its own point may still be on its way to the table
    if rule.promotes(value, list(values.values())):
        return None
    session.add(Metric(run_id=run_id, key=PRUNED_AT_KEY, step=inputs, value=float(inputs)))
    session.flush()
    return (
        f"pruned at the rung of {inputs:,} inputs: {rule.metric} {value:.6g} is not in the "
        f"best 1/{rule.reduction_factor} of the {len(values)} runs that reached it "
        f"({'lower' if rule.mode == 'min' else 'higher'} is better)"
    )


@dataclass
class ExpiredLeases:
    """Runs whose worker stopped heart-beating, by what the reconciler did with them."""

    requeued: list[int] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)


def expire_leases(session: Session, *, max_attempts: int) -> ExpiredLeases:
    """Take back running runs whose lease expired: re-queued (the caller enqueues them after
    commit), cancelled if a cancel was pending, or failed once `max_attempts` workers were lost
    (a process that keeps dying, e.g. killed for memory, would otherwise loop forever)."""
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
    ended = done.cancelled + done.failed
    if ended:
        sweep_ids = session.scalars(select(Run.sweep_id).where(Run.id.in_(ended)).distinct())
        update_sweep_status(session, [*sweep_ids.all(), *settle_links(session, ended)])
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


# --- the user's changes: cancel and retry ----------------------------------------------


def cancel_run(session: Session, run_id: int) -> Run:
    """Queued -> cancelled now; running -> cancel_requested (its worker stops it); else Conflict."""
    run = get_run(session, run_id)
    if _cancel_queued(session, Run.id == run_id):
        session.refresh(run)
        update_sweep_status(session, [run.sweep_id])
        return run
    running = and_(Run.id == run_id, Run.status == RunStatus.RUNNING)
    requested = _update_ids(session, running, cancel_requested=True)
    session.refresh(run)
    if not requested:
        raise Conflict(f"run {run_id} is already {run.status.value}; there is nothing to cancel")
    return run


@dataclass(frozen=True)
class CancelResult:
    cancelled: list[int]  # were queued, now cancelled
    cancel_requested: list[int]  # running; their workers stop them at the next step


def cancel_sweep(session: Session, sweep_id: int) -> CancelResult:
    """Cancel every queued run and ask every running one to stop; Conflict if all finished."""
    get_sweep(session, sweep_id)
    cancelled = _cancel_queued(session, Run.sweep_id == sweep_id)
    requested = _update_ids(
        session, and_(Run.sweep_id == sweep_id, Run.status == RunStatus.RUNNING),
        cancel_requested=True,
    )  # fmt: skip
    if not cancelled and not requested:
        raise Conflict(f"every run of sweep {sweep_id} has finished; there is nothing to cancel")
    update_sweep_status(session, [sweep_id])
    session.expire_all()
    return CancelResult(cancelled, requested)


def _cancel_queued(session: Session, where: Any) -> list[int]:
    ids = _update_ids(
        session, and_(where, Run.status.in_((RunStatus.QUEUED, RunStatus.HELD))),
        status=RunStatus.CANCELLED, finished_at=utcnow(),
    )  # fmt: skip
    # Runs of other sweeps linked to these end cancelled too, and their sweeps may finish.
    update_sweep_status(session, settle_links(session, ids))
    return ids


def retry_runs(session: Session, sweep_id: int, run_ids: Sequence[int] | None = None) -> list[int]:
    """Failed, cancelled and pruned runs of the sweep (or `run_ids`) -> queued; ids to enqueue."""
    get_sweep(session, sweep_id)
    where = and_(Run.sweep_id == sweep_id, Run.status.in_(RETRYABLE_STATUSES))
    if run_ids is not None:
        where = and_(where, Run.id.in_(run_ids))
    ids = _update_ids(
        session, where,
        status=RunStatus.QUEUED,
        reused_from_id=None,  # a run linked to one that failed now trains itself
        finished_at=None, lease_owner=None, lease_expires_at=None, enqueued_at=None,
        **_CLEAN_ATTEMPT,
    )  # fmt: skip
    if ids:
        update_sweep_status(session, [sweep_id])
    session.expire_all()
    return ids


# --- links: one training for runs of the same configuration ----------------------------


def find_live(session: Session, hashes: Iterable[str]) -> dict[str, int]:
    """config_hash -> id of the oldest queued or running run that trains it (not a linked one)."""
    found: dict[str, int] = {}
    for chunk in chunked(list(dict.fromkeys(hashes))):
        query = (
            select(Run.config_hash, func.min(Run.id))
            .where(Run.config_hash.in_(chunk), Run.status.in_(LIVE_STATUSES), trains_itself())
            .group_by(Run.config_hash)
        )
        found.update({h: run_id for h, run_id in session.execute(query)})
    return found


def settle_links(session: Session, source_ids: Sequence[int]) -> list[int]:
    """Give the runs linked to these (now finished) sources their outcome; their sweep ids."""
    if not source_ids:
        return []
    has_links = Run.id.in_(select(Run.reused_from_id).where(is_linked()).correlate(None))
    columns = (Run.id, Run.status, Run.inputs_seen, Run.sweep_id)
    sources = session.execute(select(*columns).where(Run.id.in_(source_ids), has_links)).all()
    sweep_ids: set[int] = set()
    now = utcnow()
    for source_id, status, inputs_seen, source_sweep in sources:
        status = RunStatus(status)
        if status in LIVE_STATUSES:
            continue
        if status in (RunStatus.SUCCEEDED, RunStatus.REUSED):
            values = {"status": RunStatus.REUSED, "inputs_seen": inputs_seen}
        else:
            values = {
                "status": status,
                "error": f"linked to run {source_id} (sweep {source_sweep}), which ended "
                f"{status.value}; retry trains this run itself",
            }
        linked = session.scalars(
            update(Run)
            .where(Run.reused_from_id == source_id, is_linked())
            .values(finished_at=now, **values)
            .returning(Run.sweep_id)
            .execution_options(synchronize_session=False)
        ).all()
        sweep_ids.update(linked)
    return sorted(sweep_ids)
