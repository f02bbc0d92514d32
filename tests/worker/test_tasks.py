"""The "runs.train" task called directly, in this process, against the real database."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared.db.models import LatestMetric, Run, RunStatus, Sweep, SweepStatus, utcnow
from shared.domain.runs import claim_run
from shared.settings import Settings
from tests.support.db import stored_steps, sweep_configs
from tests.support.stack import wait_until
from tests.worker.conftest import MakeRuns
from worker.tasks import run_dir, train


def _run(session: Session, run_id: int) -> Run:
    run = session.get(Run, run_id, populate_existing=True)
    assert run is not None
    return run


def _in_thread(fn: Callable[[], str]) -> tuple[threading.Thread, list[str]]:
    result: list[str] = []
    thread = threading.Thread(target=lambda: result.append(fn()), daemon=True)
    thread.start()
    return thread, result


def _spying(first_steps: list[int]) -> Callable[..., dict[str, Any]]:
    """The real engine, noting the first metric step each attempt reports."""
    from worker.engine import train_run

    def train_fn(config: Any, report: Callable[..., None], **kw: Any) -> dict[str, Any]:
        seen: list[int] = []

        def spy(event: str, **payload: Any) -> None:
            if event == "metrics" and not seen:
                seen.append(min(step for _, step, _ in payload["points"]))
                first_steps.append(seen[0])
            report(event, **payload)

        return train_run(config, report=spy, **kw)

    return train_fn


def test_train_records_metrics_provenance_and_outcome(
    fast_settings: Settings, session: Session, make_runs: MakeRuns
) -> None:
    run_id, other = make_runs(configs=sweep_configs("tiny.yaml"))
    assert train(run_id) == "succeeded"

    run = _run(session, run_id)
    assert run.status is RunStatus.SUCCEEDED
    assert (run.attempts, run.inputs_seen, run.error) == (1, 2048, None)
    assert run.train_seconds is not None and run.train_seconds > 0
    assert run.device is not None and run.device.split()[0] in ("cpu", "cuda")
    assert run.provenance is not None and run.provenance.get("seed") == 1
    assert run.lease_expires_at is None and run.finished_at is not None
    assert stored_steps(session, run_id, "validation_loss") == [512, 1024, 1536, 2048]
    assert stored_steps(session, run_id, "accuracy_svc") == [512, 1024, 1536, 2048]
    latest = dict(
        session.execute(
            select(LatestMetric.key, LatestMetric.step).where(LatestMetric.run_id == run_id)
        ).all()
    )
    assert latest["accuracy_argmax"] == 2048 and latest["model_params"] == 2048
    assert (run_dir(run_id, fast_settings) / "latest.pt").is_file()
    # Where the time went: every phase the run passed through, training as the table shows it.
    assert run.phases is not None
    assert {
        "claim",
        "imports",
        "data",
        "build",
        "train",
        "validation",
        "embed_heldout",
        "checkpoint",
        "svc_wait",
        "svc_fit",
        "svc_fit_heldout",
        "total",
    } <= set(run.phases)
    assert run.phases["train"] == pytest.approx(run.train_seconds, abs=0.01)
    assert 0 < run.phases["train"] < run.phases["total"]
    # The sweep closes only when its other run ends too.
    sweep = session.get(Sweep, run.sweep_id, populate_existing=True)
    assert sweep is not None and sweep.status is SweepStatus.ACTIVE
    assert train(other) == "succeeded"
    session.refresh(sweep)
    assert sweep.status is SweepStatus.FINISHED


def test_duplicate_delivery_does_nothing(
    fast_settings: Settings, session: Session, make_runs: MakeRuns
) -> None:
    (run_id,) = make_runs(configs=sweep_configs("tiny.yaml")[:1])
    assert claim_run(session, run_id, "another-worker", 60) is not None
    session.commit()
    assert train(run_id) == "skipped"
    run = _run(session, run_id)
    assert (run.status, run.lease_owner, run.attempts) == (RunStatus.RUNNING, "another-worker", 1)
    assert stored_steps(session, run_id, "validation_loss") == []


def test_finished_run_is_not_trained_again(fast_settings: Settings, make_runs: MakeRuns) -> None:
    (run_id,) = make_runs(configs=sweep_configs("tiny.yaml")[:1])
    assert train(run_id) == "succeeded"
    assert train(run_id) == "skipped"


def test_failing_user_code_fails_only_its_run(
    fast_settings: Settings, session: Session, make_runs: MakeRuns
) -> None:
    good, bad = sweep_configs("tiny.yaml")
    bad["model"] = (
        "def broken():\n    raise ValueError('this model is broken on purpose')\n\nbroken()\n"
    )
    good_id, bad_id = make_runs(configs=[good, bad])
    assert train(bad_id) == "failed"
    assert train(good_id) == "succeeded"
    failed = _run(session, bad_id)
    assert failed.status is RunStatus.FAILED
    assert failed.error == "ValueError: this model is broken on purpose"
    assert failed.traceback is not None and "Traceback" in failed.traceback
    # A failed run still says where its time went, up to the failure.
    assert failed.phases is not None and {"claim", "imports", "total"} <= set(failed.phases)
    assert "this model is broken on purpose" in failed.traceback
    # populate_existing: the session may still hold the Sweep it inserted, as it was then
    sweep = session.get(Sweep, failed.sweep_id, populate_existing=True)
    assert sweep is not None and sweep.status is SweepStatus.FINISHED


def test_cancel_stops_the_run_and_retry_resumes_from_its_checkpoint(
    fast_settings: Settings, session: Session, make_runs: MakeRuns
) -> None:
    (run_id,) = make_runs(configs=sweep_configs("slow.yaml", max_inputs=120_000))
    first_steps: list[int] = []
    thread, result = _in_thread(lambda: train(run_id, train_fn=_spying(first_steps)))
    wait_until(
        lambda: _run(session, run_id).inputs_seen >= 8_192 or not thread.is_alive(),
        timeout=60, what="the run to pass 8,192 inputs",
    )  # fmt: skip
    session.execute(update(Run).where(Run.id == run_id).values(cancel_requested=True))
    session.commit()
    thread.join(30)
    assert result == ["cancelled"]
    cancelled = _run(session, run_id)
    assert cancelled.status is RunStatus.CANCELLED
    stopped_at = cancelled.inputs_seen
    assert 8_192 <= stopped_at < 120_000

    # Retry, as the API does: queued again; the new attempt resumes from the checkpoint.
    session.execute(update(Run).where(Run.id == run_id).values(status=RunStatus.QUEUED))
    session.commit()
    assert train(run_id, train_fn=_spying(first_steps)) == "succeeded"
    run = _run(session, run_id)
    assert (run.status, run.attempts, run.inputs_seen) == (RunStatus.SUCCEEDED, 2, 120_000)
    assert first_steps[1] > 2_048, first_steps  # not from scratch
    # One point per stretch of >= 1,000 inputs (63 batches of 16), none missing or doubled.
    steps = stored_steps(session, run_id, "train_loss")
    assert steps == list(range(1_008, 120_001, 1_008))
    assert stored_steps(session, run_id, "validation_loss")[-1] == 120_000


def test_a_run_taken_over_stops_and_records_nothing(
    fast_settings: Settings, session: Session, make_runs: MakeRuns
) -> None:
    (run_id,) = make_runs(configs=sweep_configs("slow.yaml", max_inputs=400_000))
    thread, result = _in_thread(lambda: train(run_id))
    wait_until(
        lambda: _run(session, run_id).inputs_seen > 0 or not thread.is_alive(),
        timeout=60, what="the run to start",
    )  # fmt: skip
    # Its lease expires (as if the worker had hung) and another worker claims the run.
    past = utcnow() - timedelta(seconds=1)
    session.execute(update(Run).where(Run.id == run_id).values(lease_expires_at=past))
    assert claim_run(session, run_id, "new-owner", 60) is not None
    session.commit()
    thread.join(30)
    assert result == ["lost"]
    run = _run(session, run_id)
    assert (run.status, run.lease_owner, run.attempts) == (RunStatus.RUNNING, "new-owner", 2)
