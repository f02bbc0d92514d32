"""Asking a search's trials (shared/domain/search.py) as runs end, on the test's database.

The trials end through the worker's own queries (claim, metrics, finish_run), so the finish
path asks the next ones exactly as it does under a real worker; tests/api/test_search_worker.py
drives the same through the API and worker processes.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared.db.metric_writes import upsert_metrics
from shared.db.models import Run, RunStatus, Sweep, SweepStatus, utcnow
from shared.db.session import commit, make_engine
from shared.domain import search as search_domain
from shared.domain.holds import release
from shared.domain.runs import claim_run, finish_run
from shared.domain.submit import create_sweep, parse_submission
from shared.domain.trials import best_so_far, search_progress, sweep_trials
from shared.settings import Settings, get_settings
from shared.sweepfile import SpecError, parse_sweep
from shared.sweepfile.search import Search

SEARCH_YAML = """\
search:
  method: {method}
  trials: {trials}
  metric: validation_loss
  in_flight: {in_flight}
  seed: 7
matrix:
  lr: {{low: 1.0e-4, high: 1.0e-1, log: true}}
  hidden: [4, 8, 16]
experiment_name: search/${{matrix_slug}}
model: |
  nn.Sequential(nn.Linear(4, ${{hidden}}), nn.Linear(${{hidden}}, 2))
train_set: |
  torch.utils.data.TensorDataset(torch.randn(8, 4), torch.randn(8, 2))
batch_size: 4
learnrate: ${{lr}}
optimizer: SGD
max_inputs: 64
"""


def search_yaml(method: str = "tpe", trials: int = 6, in_flight: int = 2) -> str:
    return SEARCH_YAML.format(method=method, trials=trials, in_flight=in_flight)


@pytest.fixture
def search_settings(settings_env: dict[str, str], broker_url: str, monkeypatch: Any) -> Settings:
    monkeypatch.setenv("SWEEPS_BROKER_URL", broker_url)
    get_settings.cache_clear()
    return get_settings()


def submit(session: Session, text: str, settings: Settings, **kw: Any) -> tuple[int, list[int]]:
    spec = parse_submission(text, settings)
    sweep, runs = create_sweep(session, spec, name="search", **kw)
    ids = [r.id for r in runs]
    commit(session)
    return sweep.id, ids


def end_trial(
    session: Session, run_id: int, value: float, status: RunStatus = RunStatus.SUCCEEDED
) -> None:
    """What a worker does: claim, report the metric, record the outcome (one commit)."""
    assert claim_run(session, run_id, "w", 60) is not None
    upsert_metrics(session, run_id, [("validation_loss", 64, value)])
    assert finish_run(session, run_id, "w", status)
    commit(session)


def runs_of(session: Session, sweep_id: int) -> list[Run]:
    session.expire_all()
    return list(session.scalars(select(Run).where(Run.sweep_id == sweep_id).order_by(Run.id)))


def live(session: Session, sweep_id: int) -> list[int]:
    return [r.id for r in runs_of(session, sweep_id) if r.status == RunStatus.QUEUED]


def test_a_search_starts_in_flight_trials_and_asks_one_per_ended_trial_up_to_trials(
    session: Session, search_settings: Settings
) -> None:
    sweep_id, first = submit(session, search_yaml(trials=5, in_flight=2), search_settings)
    assert len(first) == 2
    ended = 0
    while queued := live(session, sweep_id):
        end_trial(session, queued[0], value=1.0 / (ended + 1))
        ended += 1
        assert len(runs_of(session, sweep_id)) == min(5, ended + 2)
    runs = runs_of(session, sweep_id)
    assert [r.matrix_id for r in runs] == ["1", "2", "3", "4", "5"]
    assert all(r.status == RunStatus.SUCCEEDED for r in runs)
    assert session.get_one(Sweep, sweep_id).status == SweepStatus.FINISHED
    # Each trial is an ordinary run: its values in params, substituted into its config.
    for run in runs:
        assert set(run.params) == {"lr", "hidden"}
        assert 1e-4 <= run.params["lr"] <= 1e-1 and run.params["hidden"] in (4, 8, 16)
        assert run.config["learnrate"] == run.params["lr"]
    search = Search.from_json(session.get_one(Sweep, sweep_id).search or {})
    points = best_so_far(sweep_trials(session, sweep_id, "validation_loss"), search)
    assert [p.best for p in points] == [1.0, 0.5, 1 / 3, 0.25, 0.2]


def test_a_rebuilt_sampler_asks_the_same_point_over_the_same_history_and_a_new_one_after() -> None:
    spec = parse_sweep(search_yaml(method="tpe", trials=20))
    assert spec.search is not None
    first = search_domain.preview_trials(spec.search, spec.yaml_text, 4)
    again = search_domain.preview_trials(spec.search, spec.yaml_text, 4)
    assert [t.params for t in first] == [t.params for t in again]
    # Each trial number has a seed of its own: no point is asked twice.
    assert len({tuple(t.params.items()) for t in first}) == 4
    # Random: trial N depends on the seed and N only (not on what was asked before it).
    random_spec = parse_sweep(search_yaml(method="random", trials=20))
    assert random_spec.search is not None
    batch = search_domain.preview_trials(random_spec.search, random_spec.yaml_text, 3)
    assert search_domain.trial_seed(7, 3) != search_domain.trial_seed(7, 2)
    assert search_domain.trial_seed(7, 3) == search_domain.trial_seed(7, 3)
    assert batch[2].params != batch[1].params


def test_tpe_after_its_random_start_gives_the_same_next_point_over_the_same_history(
    session: Session, search_settings: Settings
) -> None:
    """Two sweeps of one file with equal results ask the same TPE trials; a third with other
    results asks other ones: the point depends on (seed, history), deliberately."""
    text = search_yaml(method="tpe", trials=6, in_flight=1)

    def run_search(values: list[float]) -> list[dict[str, Any]]:
        sweep_id, _ = submit(session, text, search_settings, force=True)
        for value in values:
            end_trial(session, live(session, sweep_id)[0], value)
        return [r.params for r in runs_of(session, sweep_id)]

    a = run_search([0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
    b = run_search([0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
    c = run_search([0.1, 0.9, 0.9, 0.1, 0.1, 0.05])
    assert a == b
    assert a[:3] == c[:3]  # TPE's 3 random trials
    assert a[3:] != c[3:]


def test_a_trial_equal_to_a_finished_run_is_reused_and_counted(
    session: Session, search_settings: Settings
) -> None:
    text = search_yaml(method="random", trials=3, in_flight=3)
    first_sweep, ids = submit(session, text, search_settings)
    for value, run_id in zip((0.3, 0.2, 0.1), ids, strict=True):
        end_trial(session, run_id, value)
    # The same file again: the same points (same seed), all succeeded before.
    second, again = submit(session, text, search_settings)
    runs = runs_of(session, second)
    assert [r.status for r in runs] == [RunStatus.REUSED] * 3
    assert [r.reused_from_id for r in runs] == ids
    assert session.get_one(Sweep, second).status == SweepStatus.FINISHED
    trials = sweep_trials(session, second, "validation_loss")
    assert [t.value for t in trials] == [0.3, 0.2, 0.1]


def test_pruned_failed_and_running_trials_are_told_as_such(
    session: Session, search_settings: Settings
) -> None:
    from optuna.trial import TrialState

    sweep_id, ids = submit(session, search_yaml(trials=5, in_flight=4), search_settings)
    end_trial(session, ids[0], 0.5)
    end_trial(session, ids[1], 0.9, RunStatus.PRUNED)
    end_trial(session, ids[2], 0.7, RunStatus.FAILED)
    sweep = session.get_one(Sweep, sweep_id)
    search = Search.from_json(sweep.search or {})
    dists = search_domain.distributions(search)
    states = [
        search_domain.frozen_trial(search, t, dists)
        for t in sweep_trials(session, sweep_id, search.metric)
    ]
    assert [s.state if s else None for s in states] == [
        TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING,
        TrialState.RUNNING,
    ]  # fmt: skip
    assert states[1] is not None and states[1].intermediate_values == {64: 0.9}


def test_a_held_search_asks_for_no_trials_until_released(
    session: Session, search_settings: Settings
) -> None:
    sweep_id, ids = submit(
        session, search_yaml(method="random", trials=8, in_flight=2), search_settings
    )
    for _ in range(3):  # the first three trials fail alike: the sweep is held
        end_trial(session, live(session, sweep_id)[0], 0.5, RunStatus.FAILED)
    sweep = session.get_one(Sweep, sweep_id)
    assert sweep.hold_reason is not None
    statuses = [r.status for r in runs_of(session, sweep_id)]
    assert statuses.count(RunStatus.FAILED) == 3 and RunStatus.QUEUED not in statuses
    held = [r.id for r in runs_of(session, sweep_id) if r.status == RunStatus.HELD]
    assert len(held) == 1  # the trial queued when the third failed; no new one was asked
    assert search_domain.ask_trials(session, sweep_id) == []
    release(session, sweep_id)
    commit(session)
    assert live(session, sweep_id) == held
    end_trial(session, held[0], 0.25)  # released: the search goes on
    assert len(runs_of(session, sweep_id)) == 6


def test_a_cancelled_trial_asks_for_no_other(session: Session, search_settings: Settings) -> None:
    sweep_id, ids = submit(session, search_yaml(trials=6, in_flight=2), search_settings)
    end_trial(session, ids[0], 0.5, RunStatus.CANCELLED)
    assert len(runs_of(session, sweep_id)) == 2
    end_trial(session, ids[1], 0.5)  # a trial that ends fills in_flight again
    assert len(runs_of(session, sweep_id)) == 4


def test_filter_is_applied_by_rejection(session: Session, search_settings: Settings) -> None:
    text = search_yaml(method="random", trials=8, in_flight=8).replace(
        "  hidden: [4, 8, 16]\n", "  hidden: [4, 8, 16]\n  $filter: ${hidden} != 8\n"
    )
    sweep_id, ids = submit(session, text, search_settings)
    assert len(ids) == 8
    assert {r.params["hidden"] for r in runs_of(session, sweep_id)} <= {4, 16}


def test_a_search_that_cannot_sample_says_why_and_forgets_it_once_it_asks_again(
    session: Session, search_settings: Settings
) -> None:
    text = search_yaml(method="random", trials=6, in_flight=1).replace(
        "  hidden: [4, 8, 16]\n", "  hidden: [4, 8, 16]\n  $filter: ${hidden} != 8\n"
    )
    sweep_id, ids = submit(session, text, search_settings)
    sweep = session.get_one(Sweep, sweep_id)
    stored = dict(sweep.search or {})
    # Arranged as if the filter kept no point: every ask is refused.
    sweep.search = {**stored, "filter": "${hidden} > 100"}
    commit(session)
    end_trial(session, ids[0], 0.5)
    session.expire_all()
    progress = search_progress(session, sweep_id, session.get_one(Sweep, sweep_id).search)
    assert progress is not None and progress.stopped is not None
    assert progress.stopped.startswith("stopped asking at trial 2:")
    assert "$filter" in progress.stopped and len(runs_of(session, sweep_id)) == 1

    sweep = session.get_one(Sweep, sweep_id)
    sweep.search = {**(sweep.search or {}), "filter": stored["filter"]}
    commit(session)
    assert len(search_domain.ask_trials(session, sweep_id)) == 1  # it asks again
    commit(session)
    session.expire_all()
    assert "stopped" not in (session.get_one(Sweep, sweep_id).search or {})


def test_two_trials_ending_at_once_never_overshoot_trials(
    db_url: str, session: Session, search_settings: Settings
) -> None:
    """Two workers end trials of one sweep in the same instant, many times over: the sweep
    row lock makes them ask in turn, so the numbers are 1..trials, each once."""
    sweep_id, ids = submit(session, search_yaml("random", trials=12, in_flight=4), search_settings)
    engine = make_engine(db_url)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        with Session(engine, expire_on_commit=False) as own:
            while True:
                try:
                    barrier.wait(timeout=30)  # the last round's trials have ended
                    queued = sorted(
                        own.scalars(select(Run.id).where(
                            Run.sweep_id == sweep_id, Run.status == RunStatus.QUEUED)).all()
                    )  # fmt: skip
                    own.rollback()
                    mine = queued[index::2]
                    barrier.wait(timeout=30)  # both have read: now end one each at once
                except threading.BrokenBarrierError:
                    return
                if not mine:
                    barrier.abort()
                    return
                try:
                    end_trial(own, mine[0], 0.1 * index + 0.01 * mine[0])
                except BaseException as exc:  # noqa: BLE001 - reported below
                    errors.append(exc)
                    barrier.abort()
                    return

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    engine.dispose()
    assert not errors
    # Whatever is still queued ends alone.
    while queued := live(session, sweep_id):
        end_trial(session, queued[0], 0.5)
    runs = runs_of(session, sweep_id)
    assert sorted(int(r.matrix_id) for r in runs) == list(range(1, 13))
    assert all(r.status == RunStatus.SUCCEEDED for r in runs)


@pytest.mark.parametrize(
    ("change", "key", "line"),
    [
        ("  hidden: [4, 8, 16]\n", "  hidden: [4, 8, 16]\n  $filter: ${hidden} > 99\n", 10),
        ("  hidden: [4, 8, 16]\n", "  hidden: [4, 8, 16]\n  $filter: ${matrix_id} != '1'\n", 10),
    ],
)
def test_a_filter_that_cannot_be_sampled_is_refused(
    search_settings: Settings, change: str, key: str, line: int
) -> None:
    with pytest.raises(SpecError) as raised:
        parse_submission(search_yaml("random").replace(change, key), search_settings)
    assert raised.value.key == "$filter" and raised.value.line == line


def test_a_trial_failed_by_the_reconciler_asks_the_next_one(
    session: Session, search_settings: Settings
) -> None:
    """A trial whose workers kept dying is failed by the reconciler: it counts, and the
    search asks the next trial in the same pass."""
    from worker.reconciler import reconcile_once

    sweep_id, ids = submit(session, search_yaml(trials=4, in_flight=1), search_settings)
    assert claim_run(session, ids[0], "w", 60) is not None
    session.execute(
        update(Run)
        .where(Run.id == ids[0])
        .values(lease_expires_at=utcnow() - timedelta(seconds=1),
                attempts=search_settings.max_attempts)
    )  # fmt: skip
    commit(session)
    sent: list[int] = []
    report = reconcile_once(
        session, settings=search_settings, ids_in_broker=set, enqueue=sent.append
    )
    assert report.failed == [ids[0]]
    runs = runs_of(session, sweep_id)
    assert [r.status for r in runs] == [RunStatus.FAILED, RunStatus.QUEUED]
    assert session.get_one(Sweep, sweep_id).status == SweepStatus.ACTIVE
