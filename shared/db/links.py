"""Growing a sweep: a run whose configuration is queued or running elsewhere is linked to it.

Submitting a file whose matrix adds values to an earlier one gives runs with the same
config_hash as the earlier runs. A finished (succeeded) one is reused at once, as before; a
queued or running one is *linked*: the new run stays queued with `reused_from_id` pointing at
it and no task is sent. When the source ends, `settle_links` gives each linked run its outcome:
succeeded -> reused (its results are the source's); failed, cancelled or pruned -> the same
status, with an error that says so, and `retry` then trains the run itself. Tables show a
linked run with its source's results while it trains.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import and_, func, select, update
from sqlalchemy.orm import Session

from shared.db.models import Run, RunStatus, utcnow

LIVE_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING)
_CHUNK = 1000


def is_linked() -> object:
    """SQL condition: a queued run waiting on another run's training."""
    return and_(Run.status == RunStatus.QUEUED, Run.reused_from_id.is_not(None))


def find_live(session: Session, hashes: Iterable[str]) -> dict[str, int]:
    """config_hash -> id of the oldest queued or running run that trains it (not a linked one)."""
    found: dict[str, int] = {}
    unique = list(dict.fromkeys(hashes))
    for start in range(0, len(unique), _CHUNK):
        query = (
            select(Run.config_hash, func.min(Run.id))
            .where(
                Run.config_hash.in_(unique[start : start + _CHUNK]),
                Run.status.in_(LIVE_STATUSES),
                Run.reused_from_id.is_(None),
            )
            .group_by(Run.config_hash)
        )
        found.update({h: run_id for h, run_id in session.execute(query)})
    return found


def settle_links(session: Session, source_ids: Sequence[int]) -> list[int]:
    """Give the runs linked to these (now finished) sources their outcome; their sweep ids."""
    if not source_ids:
        return []
    # Only sources that some queued run is linked to (cancelling 5,000 runs has few or none).
    linked_to: list[int] = []
    ids = list(source_ids)
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        linked_to += session.scalars(
            select(Run.reused_from_id)
            .where(Run.reused_from_id.in_(chunk), Run.status == RunStatus.QUEUED)
            .distinct()
        ).all()
    if not linked_to:
        return []
    sources = session.execute(
        select(Run.id, Run.status, Run.inputs_seen, Run.sweep_id).where(Run.id.in_(linked_to))
    ).all()
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
            .where(Run.reused_from_id == source_id, Run.status == RunStatus.QUEUED)
            .values(finished_at=now, **values)
            .returning(Run.sweep_id)
            .execution_options(synchronize_session=False)
        ).all()
        sweep_ids.update(linked)
    return sorted(sweep_ids)
