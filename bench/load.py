"""Load benchmark (issue 6): the API under polling clients, and metric ingestion into Postgres.

    .venv/bin/python bench/load.py                      # a private Postgres cluster (initdb)
    .venv/bin/python bench/load.py --database-url postgresql+psycopg://postgres@127.0.0.1/postgres

1. Seeds 1,000 finished runs (10 sweeps x 100) with the curves of a seed-like run: 35
   validations of every validation key, and train loss + learning rate every 1,008 inputs
   over 2.1M inputs (4,411 points a run, 4.4M in all), by COPY.
2. Ingestion: worker processes push a further 40 runs' points through the worker's own path
   (worker.reporter.Reporter -> renew_lease + upsert_metrics, one transaction per flush) and
   report points per second.
3. Starts the API under uvicorn (one process, as `sweeps up` runs it, or `--api-workers N`
   processes; `--api-workers 1,2` measures both on the same data) and lets 50 clients poll
   for 60 s, each alternating GET /runs/{id}/metrics (a random run, every series) and
   GET /sweeps/{id}/table (a random sweep), one request per second per client like a
   dashboard; again with incremental metrics polls (`after`: the last validation's points);
   again with each client left open on one run and sending back its ETag (If-None-Match);
   then a short saturation phase with no pause shows capacity. Latency p50/p99
   per endpoint; the API's resident memory sampled from /proc every 0.25 s.

With --database-url, a throwaway database is created on that server and dropped at the end.
Prints a JSON summary (also written to --out if given).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import math
import multiprocessing
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from shared.db.migrate import upgrade  # noqa: E402
from shared.db.models import Run, RunStatus, Sweep, utcnow  # noqa: E402

TOKEN = "load-benchmark-token-0123456789"
SWEEPS, RUNS_PER_SWEEP, VALIDATIONS = 10, 100, 35
INPUTS_PER_VALIDATION, TRAIN_LOSS_EVERY = 60_000, 1_008
VALIDATION_KEYS = (
    "validation_loss", "accuracy_argmax", "accuracy_svc", "accuracy_svc_heldout",
    "model_params", "train_seconds", "throughput",
)  # fmt: skip
TRAIN_KEYS = ("train_loss", "learnrate")


# --- database ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def _pg_tool(name: str) -> str:
    for folder in [Path("/usr/local/bin"), *sorted(Path("/usr/lib/postgresql").glob("*/bin"))]:
        if (folder / name).exists():
            return str(folder / name)
    return shutil.which(name) or name


@contextlib.contextmanager
def private_cluster() -> Iterator[str]:
    """initdb + pg_ctl in a temporary folder on a spare loopback port; removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="sweeps-load-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", free_port()
    subprocess.run(
        _as_postgres([_pg_tool("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                      "--no-sync", "-E", "UTF8"]),
        check=True, capture_output=True,
    )  # fmt: skip
    with open(data / "postgresql.conf", "a") as conf:
        # Durable defaults (fsync on): ingestion is measured as production would commit.
        conf.write(
            f"\nport = {port}\nlisten_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{root}'\nmax_connections = 200\n"
        )
    ctl = [_pg_tool("pg_ctl"), "-D", str(data), "-l", str(root / "postgres.log")]
    subprocess.run(_as_postgres([*ctl, "start", "-w"]), check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_postgres([*ctl, "stop", "-m", "fast", "-w"]), capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def throwaway_database(admin_url: str) -> Iterator[str]:
    name = f"sweeps_load_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# --- seeding -----------------------------------------------------------------------------------


def run_points(rng: random.Random) -> list[tuple[str, int, float]]:
    """The curves of one seed-like run: 35 validations and a train loss every 1,008 inputs."""
    final = VALIDATIONS * INPUTS_PER_VALIDATION
    points = []
    for step in range(TRAIN_LOSS_EVERY, final + 1, TRAIN_LOSS_EVERY):
        points += [("train_loss", step, 1 / math.sqrt(step) + rng.random() * 0.01),
                   ("learnrate", step, 3e-4)]  # fmt: skip
    for v in range(1, VALIDATIONS + 1):
        step = v * INPUTS_PER_VALIDATION
        values = (0.5 / v, 0.8 + 0.1 * rng.random(), 0.85, 0.84, 2_002_698.0, 30.0 * v, 4e3)
        points += list(zip(VALIDATION_KEYS, [step] * 7, values, strict=True))
    return points


def insert_sweeps(url: str, sweeps: int, runs_per_sweep: int, status: RunStatus) -> list[Any]:
    """Sweeps and their runs; returns [(sweep_id, [run_id, ...]), ...]."""
    engine = create_engine(url, poolclass=NullPool)
    created = []
    now = utcnow()
    with engine.begin() as conn:
        for s in range(sweeps):
            sweep_id = conn.execute(
                insert(Sweep)
                .values(name=f"load {s}", yaml_text="# load\n", matrix_keys=["lr"], created_at=now)
                .returning(Sweep.id)  # fmt: skip
            ).scalar_one()
            rows = [
                dict(sweep_id=sweep_id, matrix_id=str(i), slug=f"lr:{i}",
                     experiment_name=f"load/lr:{i}", params={"lr": i}, config={},
                     config_hash=uuid.uuid4().hex * 2, max_inputs=2_100_000, status=status,
                     attempts=1, inputs_seen=2_100_000, train_seconds=1050.0, created_at=now)
                for i in range(runs_per_sweep)
            ]  # fmt: skip
            ids = conn.execute(insert(Run).returning(Run.id), rows).scalars().all()
            created.append((sweep_id, sorted(ids)))
    engine.dispose()
    return created


def seed(url: str, sweeps: int, runs_per_sweep: int) -> tuple[list[int], list[int], int]:
    """COPY the stored curves of finished runs; returns sweep ids, run ids, points."""
    created = insert_sweeps(url, sweeps, runs_per_sweep, RunStatus.SUCCEEDED)
    run_ids = [r for _, ids in created for r in ids]
    import psycopg

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    rng = random.Random(0)
    total = 0
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        with cur.copy("COPY metrics (run_id, key, step, value) FROM STDIN") as copy:
            for run_id in run_ids:
                buf = io.StringIO()
                for key, step, value in run_points(rng):
                    buf.write(f"{run_id}\t{key}\t{step}\t{value!r}\n")
                    total += 1
                copy.write(buf.getvalue())
        cur.execute(
            "INSERT INTO latest_metrics (run_id, key, step, value) "
            "SELECT DISTINCT ON (run_id, key) run_id, key, step, value FROM metrics "
            "ORDER BY run_id, key, step DESC"
        )
        cur.execute("ANALYZE")
    return [s for s, _ in created], run_ids, total


# --- ingestion through the worker's reporter ---------------------------------------------------


def _ingest_worker(url: str, run_ids: list[int], batch: int, start: Any) -> int:
    """One worker process: claim each run, push its points through a Reporter, finish it."""
    os.environ["SWEEPS_DATABASE_URL"] = url
    from shared.db.session import session_scope
    from shared.domain.runs import claim_run
    from worker.reporter import Reporter

    rng = random.Random(run_ids[0])
    start.wait()
    written = 0
    for run_id in run_ids:
        owner = f"load:{os.getpid()}:{run_id}"
        with session_scope() as session:
            assert claim_run(session, run_id, owner, 600) is not None
        # Flushes are driven here, one per batch (the background thread never wakes).
        reporter = Reporter(run_id, owner, lease_seconds=600, flush_seconds=3600,
                            heartbeat_seconds=3600)  # fmt: skip
        points = run_points(rng)
        for i in range(0, len(points), batch):
            reporter("metrics", points=points[i : i + batch])
            reporter("progress", inputs=points[i][1])
            reporter.write_pending()
        assert reporter.finish(RunStatus.SUCCEEDED, summary={"inputs": 2_100_000})
        written += reporter.points_written
    return written


def measure_ingestion(url: str, runs: int, processes: int, batch: int) -> dict[str, Any]:
    created = insert_sweeps(url, 1, runs, RunStatus.QUEUED)
    ids = created[0][1]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        start = manager.Event()
        with ctx.Pool(processes) as pool:
            shares = [ids[i::processes] for i in range(processes)]
            pending = [pool.apply_async(_ingest_worker, (url, share, batch, start))
                       for share in shares]  # fmt: skip
            time.sleep(3)  # let the processes import before the clock starts
            began = time.perf_counter()
            start.set()
            written = sum(p.get(timeout=900) for p in pending)
            seconds = time.perf_counter() - began
    return {
        "runs": runs, "processes": processes, "points_per_flush": batch,
        "points": written, "seconds": round(seconds, 2),
        "points_per_second": round(written / seconds),
    }  # fmt: skip


# --- the API under polling clients -------------------------------------------------------------


@contextlib.contextmanager
def api_server(url: str, workers: int = 1) -> Iterator[tuple[str, int]]:
    port = free_port()
    env = {**os.environ, "SWEEPS_DATABASE_URL": url, "SWEEPS_API_TOKEN": TOKEN,
           "SWEEPS_BROKER_URL": "redis://127.0.0.1:1/0", "PYTHONPATH": str(REPO)}  # fmt: skip
    argv = [sys.executable, "-m", "uvicorn", "api.main:create_app", "--factory",
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
            "--workers", str(workers)]  # fmt: skip
    proc = subprocess.Popen(argv, env=env, cwd=REPO, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for attempt in Retrying(
            stop=stop_after_delay(60),
            wait=wait_fixed(0.2),
            reraise=True,
            retry=retry_if_exception_type((httpx.HTTPError, AssertionError)),
        ):
            with attempt:  # fmt: skip
                assert proc.poll() is None, "the API exited"
                # /healthz is 503 here (no broker), but it answers: the app is up.
                httpx.get(f"{base}/healthz", timeout=5)
        yield base, proc.pid
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def group_rss_mb(pgid: int) -> float:
    """Resident memory of every process in a process group: uvicorn and its worker processes."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # the fields after the ")" that closes the command name: state, ppid, pgrp, ...
            if int(stat.read_text().rpartition(")")[2].split()[2]) == pgid:
                total += rss_mb(int(stat.parent.name))
    return total


class RssSampler(threading.Thread):
    def __init__(self, pid: int, every: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.samples: list[float] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            with contextlib.suppress(OSError):
                self.samples.append(group_rss_mb(self.pid))
            self.stopping.wait(self.every)


async def poll(
    base: str, sweep_ids: list[int], run_ids: list[int], clients: int, seconds: float,
    interval: float, params: dict[str, int] | None = None, revalidate: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """`clients` tasks alternating the two endpoints, pausing `interval` between requests.

    With `revalidate`, each client is a dashboard left open on one run and one sweep: it
    sends back the ETag it was given (If-None-Match), as the CLI and the browser do, and a
    `304 Not Modified` counts as an answer.
    """
    latencies: dict[str, list[float]] = {"metrics": [], "table": []}
    errors: dict[str, int] = {"metrics": 0, "table": 0}
    error_kinds: dict[str, int] = {}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    deadline = time.perf_counter() + seconds

    async def client(n: int, http: httpx.AsyncClient) -> None:
        rng = random.Random(n)
        await asyncio.sleep(rng.random() * interval)  # spread the first requests
        kind = "metrics" if n % 2 else "table"
        mine, etags = (rng.choice(run_ids), rng.choice(sweep_ids)), {}
        while time.perf_counter() < deadline:
            run, sweep = mine if revalidate else (rng.choice(run_ids), rng.choice(sweep_ids))
            path = f"/runs/{run}/metrics" if kind == "metrics" else f"/sweeps/{sweep}/table"
            sent = {"If-None-Match": etags[path]} if path in etags else {}
            began = time.perf_counter()
            try:
                response = await http.get(
                    path, params=params if kind == "metrics" else None, headers=sent
                )
                ok = (response.status_code == 200 and len(response.content) > 0) or (
                    response.status_code == 304 and bool(sent)
                )
                if revalidate and "etag" in response.headers:
                    etags[path] = response.headers["etag"]
                problem = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                ok, problem = False, type(exc).__name__
            if ok:
                latencies[kind].append(time.perf_counter() - began)
            else:
                errors[kind] += 1
                error_kinds[problem] = error_kinds.get(problem, 0) + 1
            kind = "table" if kind == "metrics" else "metrics"
            if interval:
                await asyncio.sleep(interval)

    began = time.perf_counter()
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits,
                                 timeout=60) as http:  # fmt: skip
        await asyncio.gather(*(client(n, http) for n in range(clients)))
    elapsed = time.perf_counter() - began
    return {
        kind: {
            "requests": len(values),
            "errors": errors[kind],
            "per_second": round(len(values) / elapsed, 1),
            "p50_ms": round(1000 * statistics.median(values), 1) if values else None,
            "p99_ms": round(1000 * _quantile(values, 0.99), 1) if values else None,
            "max_ms": round(1000 * max(values), 1) if values else None,
        }  # fmt: skip
        for kind, values in latencies.items()
    } | {
        "seconds": round(elapsed, 1), "clients": clients, "pause_s": interval,
        "metrics_params": params, "revalidate": revalidate, "error_kinds": error_kinds,
    }  # fmt: skip


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure_api(
    url: str, sweep_ids: list[int], run_ids: list[int], args: argparse.Namespace, workers: int
) -> dict[str, Any]:
    with api_server(url, workers) as (base, pid):
        sampler = RssSampler(pid)
        sampler.start()
        rss_idle = group_rss_mb(pid)
        polling = asyncio.run(
            poll(base, sweep_ids, run_ids, args.clients, args.seconds, args.pause)
        )
        # A live dashboard asks only for points after the last it has (`after`): here, the
        # last validation's worth of every series.
        last_window = {"after": (VALIDATIONS - 1) * INPUTS_PER_VALIDATION}
        incremental = asyncio.run(
            poll(base, sweep_ids, run_ids, args.clients, args.seconds, args.pause, last_window)
        )
        # Dashboards left open on a finished run: each poll revalidates (If-None-Match).
        revalidated = asyncio.run(
            poll(base, sweep_ids, run_ids, args.clients, args.seconds, args.pause,
                 revalidate=True)
        )  # fmt: skip
        saturated = asyncio.run(
            poll(base, sweep_ids, run_ids, args.clients, args.saturate_seconds, 0.0)
        )
        sampler.stopping.set()
        sampler.join()
    one_metrics = len(json.dumps(run_points(random.Random(0))))
    return {
        "uvicorn_workers": workers,
        "polling": polling,
        "polling_incremental": incremental,
        "polling_revalidated": revalidated,
        "saturation": saturated,
        "rss_mb": {
            "idle": round(rss_idle, 1),
            "max": round(max(sampler.samples), 1),
            "samples": len(sampler.samples),
        },  # fmt: skip
        "metrics_body_bytes_approx": one_metrics,
    }


# --- main --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="admin URL of a Postgres server to use")
    parser.add_argument("--sweeps", type=int, default=SWEEPS)
    parser.add_argument("--runs-per-sweep", type=int, default=RUNS_PER_SWEEP)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--pause", type=float, default=1.0, help="seconds between a client's polls")
    parser.add_argument("--saturate-seconds", type=float, default=15.0)
    parser.add_argument("--ingest-runs", type=int, default=40)
    parser.add_argument("--ingest-processes", type=int, default=4)
    parser.add_argument("--ingest-batch", type=int, default=1000)
    parser.add_argument("--api-workers", default="1", help="uvicorn workers; a comma list "
                        "measures each in turn on the same data")  # fmt: skip
    parser.add_argument("--ingest", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--out", type=Path, help="also write the JSON summary here")
    args = parser.parse_args()

    server = contextlib.nullcontext(args.database_url) if args.database_url else private_cluster()
    result: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} CPUs",
        "load_average_start": os.getloadavg(),
    }
    with server as admin_url, throwaway_database(admin_url) as url:
        upgrade(url)
        began = time.perf_counter()
        sweep_ids, run_ids, points = seed(url, args.sweeps, args.runs_per_sweep)
        result["seed"] = {"sweeps": len(sweep_ids), "runs": len(run_ids), "points": points,
                          "seconds": round(time.perf_counter() - began, 1)}  # fmt: skip
        print(json.dumps(result["seed"]), flush=True)
        if args.ingest:
            result["ingestion"] = measure_ingestion(
                url, args.ingest_runs, args.ingest_processes, args.ingest_batch
            )
            print(json.dumps(result["ingestion"]), flush=True)
            result["ingestion_small_flushes"] = measure_ingestion(
                url, max(4, args.ingest_runs // 4), args.ingest_processes, 50
            )
            print(json.dumps(result["ingestion_small_flushes"]), flush=True)
        result["api"] = [
            measure_api(url, sweep_ids, run_ids, args, int(workers))
            for workers in args.api_workers.split(",")
        ]
    result["load_average_end"] = os.getloadavg()
    text_out = json.dumps(result, indent=2)
    print(text_out)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text_out + "\n")


if __name__ == "__main__":
    main()
