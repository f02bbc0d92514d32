"""The reporter keeps metric points in memory while the database is unreachable."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from shared.db.models import Metric, Run, RunStatus
from shared.db.session import make_engine
from shared.domain.runs import claim_run
from tests.support.stack import wait_until
from tests.worker.conftest import MakeRuns
from worker.reporter import Reporter


class SwitchableDatabase:
    """Sessions on a real database that can be made unreachable and brought back."""

    def __init__(self, db_url: str) -> None:
        url = make_url(db_url)
        if url.get_backend_name() == "sqlite":
            down = "sqlite:////nonexistent-folder/for/this/test.db"
        else:  # a port nothing listens on: connection refused
            down = url.set(port=1).render_as_string(hide_password=False)
        self.up, self.down = make_engine(db_url), make_engine(down)
        self.current: Engine = self.up

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.current) as session:
            yield session
            session.commit()

    def dispose(self) -> None:
        self.up.dispose()
        self.down.dispose()


def _claimed(session: Session, make_runs: MakeRuns) -> int:
    (run_id,) = make_runs()
    assert claim_run(session, run_id, "w1", 60) is not None
    session.commit()
    return run_id


def _steps(session: Session, run_id: int) -> list[int]:
    session.expire_all()
    return list(
        session.scalars(select(Metric.step).where(Metric.run_id == run_id).order_by(Metric.step))
    )


def test_points_wait_in_memory_until_the_database_is_back(
    db_url: str, session: Session, make_runs: MakeRuns
) -> None:
    run_id = _claimed(session, make_runs)
    db = SwitchableDatabase(db_url)
    db.current = db.down
    reporter = Reporter(
        run_id, "w1", lease_seconds=60, flush_seconds=0.05, heartbeat_seconds=0.05,
        session_factory=db.session,
    )  # fmt: skip
    with reporter:
        reporter("metrics", points=[("train_loss", 64, 0.5)])
        reporter("progress", inputs=64, total=128, epoch=0)
        time.sleep(0.5)  # several flushes fail meanwhile
        assert _steps(session, run_id) == []
        assert reporter.should_stop() is False  # an outage is not a reason to stop training
        reporter("metrics", points=[("train_loss", 128, 0.4)])
        db.current = db.up
        wait_until(lambda: _steps(session, run_id) == [64, 128], timeout=10, what="the points")
    run = session.get_one(Run, run_id, populate_existing=True)
    assert run.inputs_seen == 64
    assert reporter.points_written == 2
    db.dispose()


def test_the_outcome_is_written_once_the_database_is_back(
    db_url: str, session: Session, make_runs: MakeRuns
) -> None:
    run_id = _claimed(session, make_runs)
    db = SwitchableDatabase(db_url)
    reporter = Reporter(
        run_id, "w1", lease_seconds=60, flush_seconds=60, heartbeat_seconds=60,
        session_factory=db.session,
    )  # fmt: skip
    with reporter:
        reporter("metrics", points=[("validation_loss", 256, 0.25)])
        db.current = db.down
    threading.Timer(1.0, lambda: setattr(db, "current", db.up)).start()
    started = time.monotonic()
    assert reporter.finish(RunStatus.SUCCEEDED, summary={"inputs": 256, "train_seconds": 1.5})
    assert time.monotonic() - started >= 0.9  # it waited for the database
    run = session.get_one(Run, run_id, populate_existing=True)
    assert (run.status, run.inputs_seen, run.train_seconds) == (RunStatus.SUCCEEDED, 256, 1.5)
    assert _steps(session, run_id) == [256]
    db.dispose()


def test_cancel_request_reaches_should_stop(
    db_url: str, session: Session, make_runs: MakeRuns
) -> None:
    run_id = _claimed(session, make_runs)
    db = SwitchableDatabase(db_url)
    reporter = Reporter(
        run_id, "w1", lease_seconds=60, flush_seconds=0.05, heartbeat_seconds=0.05,
        session_factory=db.session,
    )  # fmt: skip
    with reporter:
        time.sleep(0.2)
        assert reporter.should_stop() is False
        run = session.get_one(Run, run_id)
        run.cancel_requested = True
        session.commit()
        wait_until(reporter.should_stop, timeout=5, what="should_stop() to turn true")
    assert reporter.cancel_requested and not reporter.lease_lost
    assert reporter.finish(RunStatus.CANCELLED)
    assert session.get_one(Run, run_id, populate_existing=True).status is RunStatus.CANCELLED
    db.dispose()
