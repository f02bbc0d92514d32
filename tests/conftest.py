"""Fixtures every test folder shares: a private database and a private Redis db per test.

SWEEPS_TEST_DATABASE_URL picks Postgres (CI sets it); without it, a SQLite file per test,
the embedded default. Redis: a private redis-server per pytest process
(SWEEPS_TEST_REDIS_URL to use another), flushed before each test.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from shared.db.models import Base
from shared.db.session import make_engine

REPO = Path(__file__).resolve().parent.parent
SEED_FIXTURE = REPO / "tests" / "support" / "data" / "seed_format.yaml"


def _admin_url() -> str | None:
    return os.environ.get("SWEEPS_TEST_DATABASE_URL")


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str | None]:
    """One throwaway Postgres database for the whole session (None on SQLite)."""
    admin = _admin_url()
    if not admin:
        yield None
        return
    name = f"sweeps_test_{uuid.uuid4().hex[:10]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    yield url
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture
def db_url(pg_database: str | None, tmp_path: Path) -> Iterator[str]:
    """A database with the schema at head and no rows, private to this test."""
    if pg_database is None:
        url = f"sqlite:///{tmp_path / 'sweeps.db'}"
        engine = create_engine(url)
        Base.metadata.create_all(engine)
        engine.dispose()
        yield url
        return
    engine = create_engine(pg_database)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    engine.dispose()
    yield pg_database


@pytest.fixture
def session(db_url: str) -> Iterator[Session]:
    """A session on this test's database, to arrange and read rows directly (the test commits
    what other processes must see)."""
    engine = make_engine(db_url)
    with Session(engine, expire_on_commit=False) as db_session:
        yield db_session
    engine.dispose()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server for this pytest process (so parallel sessions never collide).

    SWEEPS_TEST_REDIS_URL uses an existing server instead.
    """
    existing = os.environ.get("SWEEPS_TEST_REDIS_URL")
    if existing:
        yield existing.rstrip("/")
        return
    workdir = tmp_path_factory.mktemp("redis")
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("redis-server did not start") from None
            time.sleep(0.05)
    client.close()
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def broker_url(redis_server: str) -> Iterator[str]:
    """A flushed Redis database for this test."""
    url = f"{redis_server}/1"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def settings_env(
    monkeypatch: pytest.MonkeyPatch, db_url: str, tmp_path: Path
) -> Iterator[dict[str, str]]:
    """Point SWEEPS_* settings at this test's database; clears the cached Settings/engines."""
    from shared.db import session as db_session
    from shared.settings import get_settings

    env = {
        "SWEEPS_DATABASE_URL": db_url,
        "SWEEPS_ARTIFACT_DIR": str(tmp_path / "artifacts"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    db_session.get_engine.cache_clear()
    yield env
    get_settings.cache_clear()
    db_session.get_engine.cache_clear()


@pytest.fixture(scope="session")
def seed_yaml() -> str:
    """The seed's experiment file in its own format (the repository's copy of the magenta row)."""
    return SEED_FIXTURE.read_text()
