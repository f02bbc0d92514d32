"""Asking a search's next trials: at submit, and in the transaction that ends a trial.

sweeps' database is the only record of a search. Whenever trials are needed, an in-memory
Optuna study is rebuilt from the sweep's runs (each run one trial: queued and running ones as
running, succeeded and reused ones complete with their metric, pruned ones pruned with their
curve, failed and cancelled ones failed), so a restarted API or worker goes on where the
search was. Optuna's RDB storage is never used (it writes its schema into our
`alembic_version` table).

Seeds: the sampler that asks trial N is seeded from (search.seed, N). A sampler rebuilt over
the same history therefore asks the same point (a transaction retried after a lost
connection asks what the first try asked), while trial N+1, asked once N is in the history,
gets a seed of its own: the random sampler never repeats its sequence, and random trials
depend on the seed and their number only, not on when they were asked. TPE's point depends
on the history too; its first trials are random ones drawn the same way.

Concurrency: the sweep row is locked (an UPDATE of itself: a row lock on Postgres, the write
lock on SQLite) before its runs are counted, so two trials ending at once never ask the same
trial number twice nor more than `trials` in all; the unique (sweep, matrix_id) stands behind.

A trial equal to a finished run reuses it and is counted, and is told at once; one equal to
a queued or running run waits for it (linked: shared/domain/runs.py). Trials are queued, never sent
here: callers enqueue the returned runs after their commit.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from shared import queue
from shared.db.models import Run, RunStatus, Sweep
from shared.domain.runs import enqueue_after_commit
from shared.domain.submit import PlannedRun, add_runs, plan_specs
from shared.domain.trials import STOPPED_KEY, Trial, metric_values, sweep_trials
from shared.plugins import parse_options
from shared.project import Project
from shared.settings import get_settings
from shared.sweepfile import RunSpec, SpecError, SweepSpec
from shared.sweepfile.matrix import FILTER_KEY, MatrixEntry
from shared.sweepfile.parse import build_trial, grid_entries
from shared.sweepfile.search import MAX_REJECTIONS, Choice, Search

if TYPE_CHECKING:  # Optuna is imported on first use, not with the API
    import optuna
    import optuna.samplers
    import optuna.trial

log = logging.getLogger(__name__)

Build = Callable[[MatrixEntry], RunSpec]
PREVIEW_TRIALS = 5  # sampled trials a preview lists


def trial_seed(seed: int, number: int) -> int:
    """The seed of the sampler that asks trial `number` (stable across processes)."""
    digest = hashlib.sha256(f"sweeps-search:{seed}:{number}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def startup_trials(trials: int) -> int:
    """TPE's random trials before it models: Optuna's 10, fewer for a small budget."""
    return min(10, max(3, trials // 3))


def ask_trials(session: Session, sweep_id: int, *, at_submit: bool = False) -> list[Run]:
    """Ask and store trials until `in_flight` are live or `trials` were started.

    Returns the new runs (queued, linked or reused). A point that cannot be built (`$filter`
    refuses it, or a rule of the format) is asked again, up to MAX_REJECTIONS times; then a
    submit fails with SpecError, and a running search stops asking (logged).
    """
    session.execute(
        update(Sweep)
        .where(Sweep.id == sweep_id)
        .values(status=Sweep.status)
        .execution_options(synchronize_session=False)
    )
    stored = session.execute(
        select(Sweep.search, Sweep.yaml_text, Sweep.hold_reason, Sweep.released_at).where(
            Sweep.id == sweep_id
        )
    ).one()
    # A held sweep waits for a person (holds.py): new trials would fail as its first ones did.
    if not stored.search or (stored.hold_reason is not None and stored.released_at is None):
        return []
    search, force = Search.from_json(stored.search), bool(stored.search.get("force"))
    trials = sweep_trials(session, sweep_id, search.metric)
    started, live = len(trials), sum(t.live for t in trials)
    if started >= search.trials or live >= search.in_flight:
        return []
    asker = _asker(search, trials, stored.yaml_text, **parse_options(get_settings()))
    created: list[Run] = []
    stopped: str | None = None
    while started < search.trials and live < search.in_flight:
        try:
            spec = asker.ask(started + 1)
        except NoPoint as exc:
            if at_submit:
                raise exc.error from None
            log.warning("sweep %s: search stops asking at trial %s: %s",
                        sweep_id, started + 1, exc.error)  # fmt: skip
            stopped = f"stopped asking at trial {started + 1}: {exc.error}"[:1000]
            break
        (plan,) = plan_specs(session, [spec], force=force)
        (run,) = add_runs(session, sweep_id, [plan])
        asker.settled(run, _reused_value(session, plan, search))
        created.append(run)
        started += 1
        live += run.status == RunStatus.QUEUED
    if stopped is not None or (created and STOPPED_KEY in stored.search):
        _record_stop(session, sweep_id, stored.search, stopped)
    return created


def _record_stop(
    session: Session, sweep_id: int, stored: dict[str, Any], reason: str | None
) -> None:
    """Keep why the search could not ask (the sweep, `sweeps status` and the UI say why it has
    fewer trials), or forget an old reason once it asks again."""
    search = {k: v for k, v in stored.items() if k != STOPPED_KEY}
    if reason is not None:
        search[STOPPED_KEY] = reason
    session.execute(
        update(Sweep)
        .where(Sweep.id == sweep_id)
        .values(search=search)
        .execution_options(synchronize_session=False)
    )


def continue_searches(session: Session, sweep_ids: Sequence[int]) -> list[int]:
    """After trials ended: ask the next ones of those sweeps that search.

    The new queued runs are sent once the caller commits. A failure to ask (a bug, a point
    that breaks a rule) is logged and leaves the outcome being recorded intact: the search
    asks again when its next trial ends. Database errors propagate (the caller retries).
    """
    rows = session.execute(select(Sweep.id, Sweep.search).where(Sweep.id.in_(list(sweep_ids))))
    queued: list[int] = []
    for sweep_id in sorted(sweep_id for sweep_id, search in rows if search):
        try:
            runs = ask_trials(session, sweep_id)
        except SQLAlchemyError:
            raise
        except Exception:
            log.exception("sweep %s: asking the next trials failed; asked again later", sweep_id)
            continue
        queued += [r.id for r in runs if r.status == RunStatus.QUEUED and r.reused_from_id is None]
    enqueue_after_commit(session, queued, queue.sender(get_settings().broker_url))
    return queued


def sweeps_of(session: Session, run_ids: Sequence[int]) -> list[int]:
    """The sweeps these runs belong to."""
    query = select(Run.sweep_id).where(Run.id.in_(list(run_ids))).distinct()
    return sorted(session.scalars(query))


def preview_specs(
    spec: SweepSpec, plugins: tuple[str, ...] = (), project: Project | None = None
) -> list[RunSpec]:
    """What preview lists: every run, or a searching sweep's first sampled trials."""
    if spec.search is None or not spec.search.samples:
        return spec.runs
    return preview_trials(spec.search, spec.yaml_text, PREVIEW_TRIALS, plugins, project)


def preview_trials(
    search: Search,
    yaml_text: str,
    count: int,
    plugins: tuple[str, ...] = (),
    project: Project | None = None,
) -> list[RunSpec]:
    """The first trials a new sweep of this file would start (its history is empty)."""
    asker = _asker(search, [], yaml_text, plugins, project)
    if search.method == "tpe":
        count = min(count, startup_trials(search.trials))  # later ones depend on results
    specs = []
    for number in range(1, min(count, search.trials) + 1):
        try:
            specs.append(asker.ask(number))
        except NoPoint:
            break
        asker.settled(None, None)
    return specs


def _reused_value(session: Session, plan: PlannedRun, search: Search) -> float | None:
    if plan.reuse_from_id is None:
        return None
    return metric_values(session, {plan.reuse_from_id}, search.metric).get(plan.reuse_from_id)


class NoPoint(Exception):
    """No point could be built for a trial (every one asked was refused)."""

    def __init__(self, error: SpecError) -> None:
        super().__init__(str(error))
        self.error = error


class _Grid:
    """grid: trial N is the matrix's N-th entry (after `$filter`), in enumeration order."""

    def __init__(self, yaml_text: str, build: Build) -> None:
        self.entries = grid_entries(yaml_text)
        self.build = build

    def ask(self, number: int) -> RunSpec:
        if number > len(self.entries):
            raise NoPoint(SpecError("every entry of the matrix has been started"))
        return self.build(self.entries[number - 1])

    def settled(self, run: Run | None, value: float | None) -> None:
        return None


class _Sampled:
    """random and tpe: an in-memory study over the sweep's trials; asks with fixed ranges."""

    def __init__(self, search: Search, history: Sequence[Trial], build: Build) -> None:
        lib = _optuna()
        self.search = search
        self.build = build
        self.distributions = distributions(search)
        direction = "maximize" if search.mode == "max" else "minimize"
        self.study = lib.create_study(direction=direction, sampler=make_sampler(search, 0))
        for trial in history:
            frozen = frozen_trial(search, trial, self.distributions)
            if frozen is not None:
                self.study.add_trial(frozen)
        self.pending: optuna.trial.Trial | None = None

    def ask(self, number: int) -> RunSpec:
        from optuna.trial import TrialState

        self.study.sampler = make_sampler(self.search, number)
        error = SpecError(f"$filter refused {MAX_REJECTIONS} sampled points", key=FILTER_KEY)
        for _ in range(MAX_REJECTIONS):
            trial = self.study.ask(self.distributions)
            entry = self.search.entry(number, point_of(self.search, trial.params))
            try:
                if self.search.keeps(entry):
                    self.pending = trial
                    return self.build(entry)
            except SpecError as exc:
                error = exc
            self.study.tell(trial, state=TrialState.FAIL)
        raise NoPoint(error)

    def settled(self, run: Run | None, value: float | None) -> None:
        """A trial that reused a finished run is told its value now; others stay running."""
        trial, self.pending = self.pending, None
        if trial is None or run is None or run.status != RunStatus.REUSED:
            return
        from optuna.trial import TrialState

        if value is not None and value == value:  # not NaN
            self.study.tell(trial, value)
        else:
            self.study.tell(trial, state=TrialState.FAIL)


def _asker(
    search: Search,
    history: Sequence[Trial],
    yaml_text: str,
    plugins: tuple[str, ...] = (),
    project: Project | None = None,
) -> _Grid | _Sampled:
    def build(entry: MatrixEntry) -> RunSpec:
        return build_trial(yaml_text, entry, plugins=plugins, project=project)

    if search.samples:
        return _Sampled(search, history, build)
    return _Grid(yaml_text, build)


def _optuna() -> Any:
    import optuna
    import optuna.samplers
    import optuna.trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def make_sampler(search: Search, number: int) -> optuna.samplers.BaseSampler:
    lib = _optuna()
    seed = trial_seed(search.seed, number)
    if search.method == "random":
        return lib.samplers.RandomSampler(seed=seed)  # type: ignore[no-any-return]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lib.exceptions.ExperimentalWarning)
        return lib.samplers.TPESampler(  # type: ignore[no-any-return]
            seed=seed, n_startup_trials=startup_trials(search.trials), constant_liar=True
        )


def distributions(search: Search) -> dict[str, Any]:
    """Fixed distributions: a choice by its index (values may be lists), a range as it is."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    found: dict[str, Any] = {}
    for key, param in search.space.items():
        if isinstance(param, Choice):
            found[key] = CategoricalDistribution(tuple(range(len(param.values))))
        elif param.integer:
            found[key] = IntDistribution(
                int(param.low), int(param.high), log=param.log, step=int(param.step or 1)
            )
        else:
            found[key] = FloatDistribution(param.low, param.high, log=param.log, step=param.step)
    return found


def point_of(search: Search, params: dict[str, Any]) -> dict[str, Any]:
    """Optuna's params -> the trial's values (a choice's value, a cleaned number)."""
    point: dict[str, Any] = {}
    for key, param in search.space.items():
        raw = params[key]
        point[key] = param.values[raw] if isinstance(param, Choice) else param.clean(raw)
    return point


def params_of(search: Search, point: dict[str, Any]) -> dict[str, Any] | None:
    """A stored trial's values -> Optuna's params; None if one is outside the space now."""
    params: dict[str, Any] = {}
    for key, param in search.space.items():
        if key not in point:
            return None
        value = point[key]
        if isinstance(param, Choice):
            matches = [i for i, choice in enumerate(param.values) if choice == value]
            if not matches:
                return None
            params[key] = matches[0]
        else:
            params[key] = value
    return params


def frozen_trial(
    search: Search, trial: Trial, dists: dict[str, Any]
) -> optuna.trial.FrozenTrial | None:
    """A stored trial as Optuna's record of it; None when it does not fit the space."""
    from optuna.trial import TrialState, create_trial

    params = params_of(search, trial.params)
    if params is None:
        return None
    value = trial.value
    finite = value is not None and value == value and abs(value) != float("inf")
    state, told, curve = TrialState.FAIL, None, None
    if trial.live:
        state = TrialState.RUNNING
    elif trial.status in (RunStatus.SUCCEEDED, RunStatus.REUSED) and finite:
        state, told = TrialState.COMPLETE, value
    elif trial.status == RunStatus.PRUNED:
        state, curve = TrialState.PRUNED, trial.curve
    try:
        return create_trial(
            state=state, value=told, params=params, distributions=dists,
            intermediate_values=curve,
        )  # fmt: skip
    except ValueError:  # a stored value outside a range (the trial is left out)
        log.debug("trial %s does not fit the search space; left out", trial.number)
        return None
