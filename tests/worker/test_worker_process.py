"""A real Celery worker process on the test's Redis and database: K at once, lost messages."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared.db.models import Metric, Run, RunStatus, utcnow
from shared.queue import RUNS_QUEUE, TRAIN_TASK, enqueue_run, get_client
from tests.support.db import sweep_configs
from tests.support.stack import stack_env, start_worker, wait_for_runs, wait_until
from tests.worker.conftest import MakeRuns
from worker.celery_app import VISIBILITY_TIMEOUT_SECONDS, create_celery

pytestmark = pytest.mark.slow


def _env(
    db_url: str, broker_url: str, tmp_path: Path, torch_threads: int | None = 1, **settings: object
) -> dict[str, str]:
    return stack_env(
        database_url=db_url, broker_url=broker_url, artifact_dir=tmp_path / "artifacts",
        torch_threads=torch_threads, heartbeat_seconds=0.5, metrics_flush_seconds=0.5, **settings,
    )  # fmt: skip


def _enqueue(broker_url: str, run_ids: list[int]) -> None:
    get_client.cache_clear()
    for run_id in run_ids:
        enqueue_run(run_id, broker_url=broker_url)
    get_client.cache_clear()


def _runs(session: Session, run_ids: list[int]) -> list[Run]:
    session.expire_all()
    return [session.get_one(Run, run_id) for run_id in run_ids]


def test_celery_settings_suit_long_gpu_jobs(settings_env: dict[str, str]) -> None:
    app = create_celery(runs_per_gpu=3)
    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.worker_max_tasks_per_child == 1
    assert conf.worker_concurrency == 3
    assert conf.broker_transport_options["visibility_timeout"] == VISIBILITY_TIMEOUT_SECONDS
    assert VISIBILITY_TIMEOUT_SECONDS >= 24 * 3600
    assert TRAIN_TASK in app.tasks
    assert conf.task_default_queue == RUNS_QUEUE


def test_two_runs_per_gpu_train_at_the_same_time(
    db_url: str, broker_url: str, tmp_path: Path, session: Session, make_runs: MakeRuns
) -> None:
    (config,) = sweep_configs("slow.yaml", max_inputs=40_000)
    # The user's code checks that `--gpu 0` pinned the device for the run's process, that the
    # two runs share the host's cores instead of each taking all of them, and that the process
    # started warm: scikit-learn's SVC, which a cold run imports only at its first probe, is
    # already loaded (inherited from the worker's parent).
    config["model"] = (
        "import os, sys\nassert os.environ['CUDA_VISIBLE_DEVICES'] == '0', 'not pinned'\n"
        "assert 'sklearn.svm' in sys.modules, 'cold start: the parent did not import sklearn'\n"
        "cores = max(1, len(os.sched_getaffinity(0)) // 2)\n"
        "assert torch.get_num_threads() == cores, f'{torch.get_num_threads()} threads'\n"
        + config["model"]
    )
    run_ids = make_runs(configs=[config, {**config, "seed": 2}])
    env = _env(db_url, broker_url, tmp_path, torch_threads=None)
    with start_worker(env, log_path=tmp_path / "w.log", runs_per_gpu=2, gpu="0") as worker:
        _enqueue(broker_url, run_ids)
        wait_for_runs(db_url, run_ids, timeout=150, diagnostics=worker.log_tail)
        # The parent holds torch (warm start) but never a CUDA context, which would break
        # every forked child: the driver library is loaded only when CUDA is initialised.
        maps = Path(f"/proc/{worker.pid}/maps").read_text()
        assert "libtorch" in maps and "libcuda.so" not in maps
        assert "warm start: imported torch" in worker.log()
    first, second = _runs(session, run_ids)
    assert first.started_at and first.finished_at and second.started_at and second.finished_at
    # Overlapping intervals: each started before the other finished.
    assert first.started_at < second.finished_at and second.started_at < first.finished_at
    assert first.inputs_seen == second.inputs_seen == 40_000
    assert first.worker_host == second.worker_host
    # A warm child imports nothing: the phase is there, and far below a cold torch import.
    assert first.phases is not None and second.phases is not None
    assert first.phases["imports"] < 0.5 and second.phases["imports"] < 0.5


def test_reconciler_reenqueues_lost_messages_and_expired_leases(
    db_url: str, broker_url: str, tmp_path: Path, session: Session, make_runs: MakeRuns
) -> None:
    tiny = sweep_configs("tiny.yaml")
    lost_id, dead_id = make_runs(configs=tiny)
    long_ago = utcnow() - timedelta(seconds=30)
    # lost_id: queued long ago, its message never reached Redis.
    session.execute(update(Run).where(Run.id == lost_id).values(enqueued_at=long_ago))
    # dead_id: claimed by a worker that died (lease expired, no message anywhere).
    session.execute(
        update(Run)
        .where(Run.id == dead_id)
        .values(
            status=RunStatus.RUNNING,
            lease_owner="dead-host:1:x",
            attempts=1,
            lease_expires_at=long_ago,
        )  # fmt: skip
    )
    session.commit()
    env = _env(db_url, broker_url, tmp_path, reconcile_seconds=0.5, queued_grace_seconds=5)
    with start_worker(env, log_path=tmp_path / "worker.log") as worker:
        wait_for_runs(db_url, [lost_id, dead_id], timeout=120, diagnostics=worker.log_tail)
        log = worker.log()
    lost, dead = _runs(session, [lost_id, dead_id])
    assert (lost.attempts, dead.attempts) == (1, 2)
    assert "reconciler" in log


def test_killed_run_process_is_resumed_from_its_checkpoint(
    db_url: str, broker_url: str, tmp_path: Path, session: Session, make_runs: MakeRuns
) -> None:
    (run_id,) = make_runs(configs=sweep_configs("slow.yaml", max_inputs=100_000))
    env = _env(db_url, broker_url, tmp_path, lease_seconds=3, reconcile_seconds=0.5)
    with start_worker(env, log_path=tmp_path / "worker.log") as worker:
        _enqueue(broker_url, [run_id])
        wait_until(
            lambda: _runs(session, [run_id])[0].inputs_seen >= 6_144,
            timeout=90, what="the run to pass its third checkpoint", diagnostics=worker.log_tail,
        )  # fmt: skip
        killed = worker.kill_children()
        assert killed
        wait_for_runs(db_url, [run_id], timeout=120, diagnostics=worker.log_tail)
    (run,) = _runs(session, [run_id])
    assert (run.attempts, run.inputs_seen) == (2, 100_000)
    # Points re-reported after the resume overwrite themselves: none missing or doubled.
    steps = session.scalars(
        select(Metric.step)
        .where(Metric.run_id == run_id, Metric.key == "train_loss")
        .order_by(Metric.step)
    ).all()
    assert steps == list(range(1_008, 100_001, 1_008))
