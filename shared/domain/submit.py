"""Submitting a sweep: read and validate the file, plan which runs reuse earlier results,
store the sweep and its runs."""

from __future__ import annotations

import json
import math
import os.path
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from shared.db.chunks import chunked
from shared.db.models import SWEEP_NAME_MAX, ApiToken, Run, RunStatus, Sweep, utcnow
from shared.db.session import Send
from shared.domain.errors import InvalidInput
from shared.domain.runs import enqueue_after_commit, find_live, needs_message
from shared.domain.sweeps import update_sweep_status
from shared.plugins import parse_options
from shared.settings import Settings
from shared.sweepfile import RunSpec, SpecError, SweepSpec, parse_with_extends
from shared.sweepfile.document import Locator

MAX_INPUTS = 2**62  # runs.max_inputs and metrics.step are BIGINT


def parse_submission(
    text: str | bytes,
    settings: Settings,
    *,
    filename: str = "sweep.yaml",
    files: Mapping[str, str] | None = None,
) -> SweepSpec:
    """Validate and expand a submitted file; the service never runs any of its code.

    `files`: the bases its `$extends` names, by name relative to `filename`. The settings give
    the run limit and the workers' plugin modules (a trainer under one is resolved by the
    worker). On top of the
    format's rules: a sweep of no runs is refused (valid per FORMAT.md, but surely a
    mistake), and so are values no database column can hold.
    """
    bases = {posixpath.normpath(k): v for k, v in (files or {}).items()}
    spec = parse_with_extends(
        text, filename, bases.get,
        max_runs=settings.max_runs, **parse_options(settings),
    )  # fmt: skip
    if not spec.runs and not (spec.search and spec.search.samples):
        raise SpecError("the matrix gives no runs (an empty list, or a $filter that keeps none)",
                        key="matrix")  # fmt: skip
    for run in [*spec.runs, *spec.probes]:
        try:
            check_storable(run)
        except SpecError as exc:
            # A merged ($extends) file's lines are not the user's: the key names the place.
            raise exc if spec.merged_from else Locator(spec.yaml_text).locate(exc) from None
    return spec


def check_sweep_name(name: str | None) -> str | None:
    """A given sweep name as stored: stripped, None when blank; InvalidInput when it is longer
    than the column or holds a control character or a lone UTF-16 surrogate."""
    if name is None:
        return None
    if len(name) > SWEEP_NAME_MAX or any(
        ord(ch) < 32 or 0xD800 <= ord(ch) <= 0xDFFF for ch in name
    ):
        raise InvalidInput(f"'name' must be at most {SWEEP_NAME_MAX} printable characters")
    return name.strip() or None


def sweep_name(spec: SweepSpec, name: str | None) -> str:
    """The name a sweep is stored under: the given one, else the experiment names' common
    prefix (the whole name for one run)."""
    given = check_sweep_name(name)
    if given:
        return given
    names = [r.experiment_name for r in spec.runs or spec.probes]
    prefix = os.path.commonprefix(names) if names else ""
    return prefix.rstrip("_-/:. ")[:SWEEP_NAME_MAX] or "sweep"


def json_safe(value: Any) -> Any:
    """`value` as it is stored: dates and sets become strings, as the spec hashes them."""
    return json.loads(json.dumps(value, default=str))


def check_storable(spec: RunSpec) -> None:
    """SpecError for values no database column can hold (YAML escapes can make them)."""
    label = f"{spec.matrix_id} ({spec.slug})" if spec.slug else None
    glance = _storable_at_a_glance(spec.config)
    for key, value in spec.config.items() if not glance else ():
        problem = _unstorable(value)
        if problem:
            raise SpecError(
                f"'{key}' holds {problem}, which cannot be stored", key=str(key), run=label
            )
    max_inputs = spec.settings.max_inputs
    if max_inputs is not None and max_inputs > MAX_INPUTS:
        raise SpecError(
            f"'max_inputs' must be at most {MAX_INPUTS:,}", key="max_inputs", value=max_inputs
        )


def _storable_at_a_glance(config: dict[str, Any]) -> bool:
    """True when one C-speed JSON encoding shows nothing unstorable (the slow walk then names
    the value when there is one): no NaN or infinity, no NUL, no lone surrogate."""
    try:
        text = json.dumps(config, ensure_ascii=False, allow_nan=False, default=str)
        text.encode("utf-8")
    except (ValueError, UnicodeEncodeError):
        return False
    return "\\u0000" not in text


def _unstorable(value: Any) -> str | None:
    if isinstance(value, str):
        if "\x00" in value:
            return "a NUL character (\\0)"
        if any(0xD800 <= ord(ch) <= 0xDFFF for ch in value):
            return "an unpaired UTF-16 surrogate"
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return f"the number {value} (not valid JSON)"
    if isinstance(value, dict):
        items: Iterable[Any] = [*value.keys(), *value.values()]
    elif isinstance(value, list | tuple | set):
        items = value
    else:
        return None
    return next((p for p in map(_unstorable, items) if p), None)


@dataclass(frozen=True)
class PlannedRun:
    spec: RunSpec
    reuse_from_id: int | None  # a succeeded run with the same config_hash, unless forced
    # else a queued or running run with that hash: linked to it, not trained twice (runs.py)
    link_to_id: int | None = None


def find_reusable(session: Session, hashes: Iterable[str]) -> dict[str, int]:
    """config_hash -> id of the newest succeeded run with that hash."""
    found: dict[str, int] = {}
    for chunk in chunked(list(dict.fromkeys(hashes))):
        query = (
            select(Run.config_hash, func.max(Run.id))
            .where(Run.config_hash.in_(chunk), Run.status == RunStatus.SUCCEEDED)
            .group_by(Run.config_hash)
        )
        found.update({h: run_id for h, run_id in session.execute(query)})
    return found


def plan_runs(session: Session, spec: SweepSpec, *, force: bool = False) -> list[PlannedRun]:
    """Each run of the spec with the earlier run it would reuse (none when `force`)."""
    return plan_specs(session, spec.runs, force=force)


def plan_specs(
    session: Session, specs: Sequence[RunSpec], *, force: bool = False
) -> list[PlannedRun]:
    """`plan_runs` for some runs (a search's trials, as they are asked)."""
    if force:
        return [PlannedRun(r, None) for r in specs]
    hashes = [r.config_hash for r in specs]
    reusable = find_reusable(session, hashes)
    live = find_live(session, (h for h in hashes if h not in reusable))
    return [PlannedRun(r, reusable.get(r.config_hash), live.get(r.config_hash)) for r in specs]


@dataclass(frozen=True)
class CreatedRun:
    """A stored run as the submit routes report it (no ORM object per run: 10,000 are many)."""

    id: int
    matrix_id: str
    slug: str
    status: RunStatus
    config_hash: str
    reused_from_id: int | None

    @classmethod
    def of(cls, run: Run) -> CreatedRun:
        return cls(run.id, run.matrix_id, run.slug, run.status, run.config_hash,
                   run.reused_from_id)  # fmt: skip


@dataclass(frozen=True)
class Submitted:
    sweep: Sweep
    runs: list[CreatedRun]
    to_enqueue: list[int]  # the queued runs that train themselves, sent after the commit


def submit_sweep(
    session: Session,
    spec: SweepSpec,
    send: Send,
    *,
    name: str | None,
    force: bool = False,
    owner: ApiToken | None = None,
) -> Submitted:
    """Store the sweep and its runs, and have `send` carry each run that needs a task message
    once the transaction commits (a reused or linked run needs none). `owner`: create_sweep."""
    sweep, runs = create_sweep(session, spec, name=name, force=force, owner=owner)
    to_enqueue = list(session.scalars(
        select(Run.id).where(Run.sweep_id == sweep.id, needs_message()).order_by(Run.id)
    ))  # fmt: skip
    enqueue_after_commit(session, to_enqueue, send)
    return Submitted(sweep, runs, to_enqueue)


def create_sweep(
    session: Session,
    spec: SweepSpec,
    *,
    name: str | None,
    force: bool = False,
    owner: ApiToken | None = None,
) -> tuple[Sweep, list[CreatedRun]]:
    """Store a parsed sweep and its runs; runs already trained elsewhere become `reused`.

    `owner`: the token that submitted it, which may cancel and retry it (shared/domain/access.py).

    `spec` comes from `parse_submission`, which has checked that every value is storable.
    The runs go in as one bulk INSERT (executemany).
    """
    sweep = Sweep(
        name=sweep_name(spec, name),
        yaml_text=spec.yaml_text,
        matrix_keys=list(spec.matrix_keys),
        owner_token_id=owner.id if owner is not None else None,
    )
    if spec.search is not None:  # its first trials are asked now, the others as trials end
        sweep.search = json_safe({**spec.search.to_json(), "force": force})
    session.add(sweep)
    session.flush()
    if spec.search is not None:
        from shared.domain.search import ask_trials

        runs = [CreatedRun.of(run) for run in ask_trials(session, sweep.id, at_submit=True)]
    else:
        runs = insert_runs(session, sweep.id, plan_runs(session, spec, force=force))
    if update_sweep_status(session, [sweep.id]):  # every run reused: finished already
        session.refresh(sweep)
    return sweep, runs


def insert_runs(session: Session, sweep_id: int, plans: list[PlannedRun]) -> list[CreatedRun]:
    """Store planned runs as `add_runs` does, in one bulk INSERT (10,000 runs of a matrix):
    Core's executemany without RETURNING, which SQLite and psycopg batch; the ids are then
    read back by matrix_id, unique within the sweep."""
    sources = _inputs_seen(session, {p.reuse_from_id for p in plans if p.reuse_from_id})
    now = utcnow()
    rows = [_new_run(sweep_id, plan, sources, now) for plan in plans]
    session.connection().execute(insert(Run.__table__), rows)  # type: ignore[arg-type]
    stored = session.execute(select(Run.matrix_id, Run.id).where(Run.sweep_id == sweep_id))
    ids = {matrix_id: run_id for matrix_id, run_id in stored}
    return [
        CreatedRun(ids[row["matrix_id"]], row["matrix_id"], row["slug"], row["status"],
                   row["config_hash"], row["reused_from_id"])
        for row in rows
    ]  # fmt: skip


def add_runs(session: Session, sweep_id: int, plans: list[PlannedRun]) -> list[Run]:
    """Store planned runs in a sweep: queued, linked (queued, no task) or reused."""
    sources = _inputs_seen(session, {p.reuse_from_id for p in plans if p.reuse_from_id})
    now = utcnow()
    runs = [Run(**_new_run(sweep_id, plan, sources, now)) for plan in plans]
    session.add_all(runs)
    session.flush()
    return runs


def _new_run(
    sweep_id: int, plan: PlannedRun, inputs_seen: dict[int, int], now: datetime
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "sweep_id": sweep_id,
        "matrix_id": plan.spec.matrix_id,
        "slug": plan.spec.slug,
        "experiment_name": plan.spec.experiment_name,
        "params": json_safe(plan.spec.params),
        "config": json_safe(plan.spec.config),
        "config_hash": plan.spec.config_hash,
        "max_inputs": plan.spec.settings.max_inputs,
        "status": RunStatus.QUEUED,
        "inputs_seen": 0,
        "reused_from_id": None,
        "finished_at": None,
        "created_at": now,
    }
    if plan.reuse_from_id is not None:
        row["status"] = RunStatus.REUSED
        row["reused_from_id"] = plan.reuse_from_id
        row["inputs_seen"] = inputs_seen.get(plan.reuse_from_id, 0)
        row["finished_at"] = now
    elif plan.link_to_id is not None:  # stays queued, no task: its source trains it
        row["reused_from_id"] = plan.link_to_id
    return row


def _inputs_seen(session: Session, run_ids: set[int]) -> dict[int, int]:
    if not run_ids:
        return {}
    query = select(Run.id, Run.inputs_seen).where(Run.id.in_(run_ids))
    return {run_id: seen for run_id, seen in session.execute(query)}
