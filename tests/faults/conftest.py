"""Fault-test fixtures: PRIVATE Postgres and Redis servers that a test may stop and restart.

The machine's shared servers are never touched: each module gets its own Postgres cluster
(initdb + pg_ctl in a temporary folder, on a spare loopback port) with a fresh database per
test, and each test gets its own redis-server (no persistence, so a restart loses the queue).
`stack` bundles them with the helpers of tests/support/stack.py that start Celery workers and
the API as real subprocesses, and stops everything when the test ends.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from shared.db.models import Base
from tests.faults.s3 import S3Server
from tests.support.stack import ManagedProcess, free_port, stack_env, start_api, start_worker

TOKEN = "faults-token-0123456789"
PG_BIN_DIRS = [Path("/usr/local/bin"), *sorted(Path("/usr/lib/postgresql").glob("*/bin"))]

# Small intervals so that leases expire and lost runs are found within seconds, not minutes.
FAST_WORKER_SETTINGS: dict[str, Any] = {
    "lease_seconds": 4,
    "heartbeat_seconds": 0.3,
    "metrics_flush_seconds": 0.3,
    "reconcile_seconds": 0.5,
    "queued_grace_seconds": 3,
}


def _pg_binary(name: str) -> str:
    for folder in PG_BIN_DIRS:
        if (folder / name).exists():
            return str(folder / name)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found in {PG_BIN_DIRS} or PATH")
    return found


def _as_postgres(argv: list[str]) -> list[str]:
    """Postgres refuses to run as root: run its tools as the postgres user when we are root."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


class PostgresCluster:
    """A throwaway cluster: `initdb` into a temporary folder, served on 127.0.0.1:`port`."""

    def __init__(self) -> None:
        # Not under pytest's tmp folder: that is private to root and postgres must enter it.
        self.root = Path(tempfile.mkdtemp(prefix="sweeps-faults-pg-"))
        self.data = self.root / "data"
        self.logfile = self.root / "postgres.log"
        self.port = free_port()
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        subprocess.run(
            _as_postgres([
                _pg_binary("initdb"), "-D", str(self.data), "-U", "postgres",
                "--auth=trust", "--no-sync", "-E", "UTF8",
            ]),
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        with open(self.data / "postgresql.conf", "a") as conf:
            # Loopback only, our own socket folder, and durability off: a test cluster.
            conf.write(
                f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.root}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "max_connections = 200\n"
            )

    def _ctl(self, *args: str, timeout: float = 60) -> None:
        argv = [_pg_binary("pg_ctl"), "-D", str(self.data), "-l", str(self.logfile), *args]
        subprocess.run(_as_postgres(argv), check=True, capture_output=True, timeout=timeout)

    def start(self) -> None:
        self._ctl("start", "-w", "-t", "60")

    def stop(self, mode: str = "fast") -> None:
        """`fast` ends every session (clients see their connections drop), like a restart."""
        self._ctl("stop", "-w", "-t", "60", "-m", mode)

    def running(self) -> bool:
        argv = [_pg_binary("pg_ctl"), "-D", str(self.data), "status"]
        return subprocess.run(_as_postgres(argv), capture_output=True).returncode == 0

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A fresh database with the schema at head; returns its URL."""
        name = f"faults_{uuid.uuid4().hex[:10]}"
        admin = create_engine(self.url(), isolation_level="AUTOCOMMIT", poolclass=NullPool)
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        engine = create_engine(self.url(name), poolclass=NullPool)
        Base.metadata.create_all(engine)
        engine.dispose()
        return self.url(name)

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            if self.running():
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


class RedisServer:
    """A private redis-server on a spare port that keeps nothing on disk."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
        ]  # fmt: skip
        log = open(self.workdir / "redis.log", "ab")  # noqa: SIM115 -- the child holds it
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        try:
            for attempt in Retrying(
                stop=stop_after_delay(15), wait=wait_fixed(0.05), reraise=True,
                retry=retry_if_exception_type(redis.ConnectionError),
            ):  # fmt: skip
                with attempt:
                    client.ping()
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: the server dies with everything it held in memory."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)


@dataclass
class Stack:
    """One test's private servers, settings and processes (all stopped at teardown)."""

    tmp: Path
    pg: PostgresCluster
    redis: RedisServer
    db_url: str
    settings: dict[str, Any]
    processes: list[ManagedProcess] = field(default_factory=list)
    api_port: int = field(default_factory=free_port)

    @property
    def env(self) -> dict[str, str]:
        return stack_env(
            database_url=self.db_url, broker_url=self.redis.url,
            artifact_dir=self.tmp / "artifacts", api_token=TOKEN, **self.settings,
        )  # fmt: skip

    def worker(self, name: str = "worker", runs_per_gpu: int = 1, **env: str) -> ManagedProcess:
        """A worker process; `env` adds to (or replaces) its environment."""
        proc = start_worker(
            self.env | env, log_path=self.tmp / f"{name}.log", runs_per_gpu=runs_per_gpu, name=name,
            ready_timeout=90,
        )  # fmt: skip
        self.processes.append(proc)
        return proc

    def api(self, name: str = "api") -> ManagedProcess:
        """The API under uvicorn, always on the same port (a restarted API is found again)."""
        proc = start_api(
            self.env, log_path=self.tmp / f"{name}.log", port=self.api_port, name=name,
            ready_timeout=60,
        )  # fmt: skip
        self.processes.append(proc)
        return proc

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=f"http://127.0.0.1:{self.api_port}",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30,
        )

    def logs(self) -> str:
        return "\n".join(proc.log_tail(60) for proc in self.processes)

    def stop_all(self) -> None:
        # The test is over: no graceful shutdown to wait for, the whole group goes at once.
        for proc in reversed(self.processes):
            with contextlib.suppress(Exception):
                proc.kill()


@pytest.fixture(scope="module")
def pg_cluster() -> Iterator[PostgresCluster]:
    """A private Postgres cluster per test module (initdb takes seconds; restarts are allowed)."""
    cluster = PostgresCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.kill()


@pytest.fixture(scope="session", autouse=True)
def _torch_for_checkpoint_reads() -> None:
    """helpers.checkpoint_inputs reads checkpoints with torch; importing it takes seconds on a
    busy machine, and a warm-started run can finish in that time, so the scenarios would see
    it already done. Imported once, before any stack starts."""
    import torch  # noqa: F401


@pytest.fixture
def stack(
    tmp_path: Path, pg_cluster: PostgresCluster, private_redis: RedisServer
) -> Iterator[Stack]:
    if not pg_cluster.running():  # a test that stopped it and failed before starting it again
        pg_cluster.start()
    built = Stack(
        tmp=tmp_path, pg=pg_cluster, redis=private_redis,
        db_url=pg_cluster.create_database(), settings=dict(FAST_WORKER_SETTINGS),
    )  # fmt: skip
    yield built
    built.stop_all()


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    """A real S3-compatible server (moto) with one bucket; this process's botocore uses it."""
    from shared.artifacts import _s3_in

    server = S3Server()
    server.start()
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    _s3_in.cache_clear()  # a filesystem made earlier would still point at an old endpoint
    try:
        yield server
    finally:
        server.stop()
        _s3_in.cache_clear()
