"""How fast the sweep page gets its learning curves: 200 runs x 35 validations by default.

Seeds a sweep straight through the models (every curve key the charts draw: four validation
metrics with `--validations` points each, train_loss with `--train-points`), then times:

1. GET /ui/api/curves?sweeps=ID (the UI's batch endpoint: two SQL queries, downsampled in SQL),
2. the same data as one GET /runs/{id}/metrics per run (what the page would cost without it),
3. with --browser, chromium loading the sweep page: fetch + draw of all five charts, from the
   performance marks ui.js sets.

    .venv/bin/python bench/ui_curves.py [--database-url URL] [--runs 200] [--browser]

SQLite in a temporary directory unless --database-url names a database (its tables are
dropped and re-created: use a scratch database).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from shared.db.models import Base, LatestMetric, Metric, Run, RunStatus, Sweep  # noqa: E402
from shared.db.session import make_engine, unit_of_work  # noqa: E402

TOKEN = "swp_bench-ui-curves-token"
VALIDATION_KEYS = ("validation_loss", "accuracy_argmax", "accuracy_svc", "accuracy_svc_heldout")


def seed(url: str, runs: int, validations: int, train_points: int) -> tuple[int, int]:
    """One finished sweep; returns (sweep id, metric rows written)."""
    engine = make_engine(url)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    every = 60_000
    with unit_of_work(sessionmaker(engine)) as session:
        sweep = Sweep(name="bench/ui", yaml_text="# bench\n", matrix_keys=["lr", "width"])
        session.add(sweep)
        session.flush()
        run_rows = [
            Run(sweep_id=sweep.id, matrix_id=str(i), slug=f"lr:{i % 10}_width:{i // 10}",
                experiment_name=f"bench_{i}", params={"lr": i % 10, "width": i // 10},
                config={}, config_hash=f"{i:064x}", status=RunStatus.SUCCEEDED,
                max_inputs=validations * every, inputs_seen=validations * every)
            for i in range(runs)
        ]  # fmt: skip
        session.add_all(run_rows)
        session.flush()
        rows = []
        for n, run in enumerate(run_rows):
            for key in VALIDATION_KEYS:
                rows += [{"run_id": run.id, "key": key, "step": (p + 1) * every,
                          "value": 1 / (p + 1 + n)} for p in range(validations)]  # fmt: skip
            step = validations * every // max(1, train_points)
            rows += [{"run_id": run.id, "key": "train_loss", "step": (p + 1) * step,
                      "value": 1 / (p + 2)} for p in range(train_points)]  # fmt: skip
        for start in range(0, len(rows), 20_000):
            session.execute(insert(Metric), rows[start : start + 20_000])
        session.execute(
            insert(LatestMetric),
            [{"run_id": r.id, "key": k, "step": validations * every, "value": 0.5}
             for r in run_rows for k in VALIDATION_KEYS],
        )  # fmt: skip
        session.flush()
        sweep_id = sweep.id
    engine.dispose()
    return sweep_id, len(rows)


def median_ms(call, repeat: int) -> float:  # noqa: ANN001
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def time_in_process(url: str, sweep_id: int, repeat: int) -> tuple[float, float]:
    """The endpoint's own work (queries + building the payload), without HTTP or JSON:
    (wall ms, CPU ms of this process). CPU time barely moves with the machine's load; with
    SQLite it includes the queries, with Postgres the server's share is not in it."""
    from shared.domain.curves import curves_payload, load_runs

    engine = make_engine(url)
    with Session(engine) as session:
        runs = load_runs(session, sweep_ids=[sweep_id])
        cpu_start = time.process_time()
        wall = median_ms(lambda: curves_payload(session, runs, max_points=400), repeat)
        cpu = (time.process_time() - cpu_start) * 1000 / repeat
    engine.dispose()
    return wall, cpu


def time_http(base: str, sweep_id: int, runs: int, repeat: int) -> dict[str, float]:
    with httpx.Client(base_url=base, timeout=60) as client:
        login = client.post("/ui/login", data={"token": TOKEN})
        assert login.status_code == 303, login.text
        url = f"/ui/api/curves?sweeps={sweep_id}&max_points=400"
        body = client.get(url)
        body.raise_for_status()
        data = body.json()
        assert len(data["runs"]) == runs
        assert all(len(data["series"][key]) == runs for key in VALIDATION_KEYS)
        batch = median_ms(lambda: client.get(url).raise_for_status(), repeat)
        ids = [r["id"] for r in data["runs"]]
        keys = ",".join(("train_loss", *VALIDATION_KEYS))
        bearer = {"Authorization": f"Bearer {TOKEN}"}

        def per_run() -> None:
            for run_id in ids:
                client.get(f"/runs/{run_id}/metrics?keys={keys}&max_points=400",
                           headers=bearer).raise_for_status()  # fmt: skip

        per_run_ms = median_ms(per_run, max(1, repeat // 3))
    return {"batch_ms": batch, "batch_kb": len(body.content) / 1024, "per_run_ms": per_run_ms}


def time_browser(base: str, sweep_id: int) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-quic"],
        )
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.goto(f"{base}/ui/login")
        page.fill("#token", TOKEN)
        page.click("button[type=submit]")
        results = []
        for _ in range(3):  # the first load also fetches and compiles plotly.js
            page.goto(f"{base}/ui/sweeps/{sweep_id}")
            page.wait_for_selector("#curves[data-ready='1']", timeout=60_000)
            results.append(page.evaluate(
                "() => performance.getEntriesByName('curves-drawn')[0].startTime"
                " - performance.getEntriesByName('curves-fetch')[0].startTime"
            ))  # fmt: skip
        browser.close()
    return {"draw_first_ms": results[0], "draw_median_ms": statistics.median(results)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--validations", type=int, default=35)
    parser.add_argument("--train-points", type=int, default=350)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--browser", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{tmp}/bench.db"
        sweep_id, rows = seed(url, args.runs, args.validations, args.train_points)
        port = free_port()
        # The broker is never used here (nothing is submitted); the API only needs a URL.
        env = {"SWEEPS_DATABASE_URL": url, "SWEEPS_API_TOKEN": TOKEN, "PATH": "/usr/bin:/bin",
               "SWEEPS_BROKER_URL": "redis://127.0.0.1:1/0"}  # fmt: skip
        api = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "api.main:create_app", "--factory",
             "--port", str(port), "--log-level", "warning"],
            cwd=REPO, env=env,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for(base)
            result = time_http(base, sweep_id, args.runs, args.repeat)
            result["in_process_ms"], result["in_process_cpu_ms"] = time_in_process(
                url, sweep_id, args.repeat
            )
            if args.browser:
                result.update(time_browser(base, sweep_id))
        finally:
            api.terminate()
            api.wait(10)
    backend = url.split(":", 1)[0]
    print(f"{args.runs} runs x {args.validations} validations x 4 keys + {args.train_points} "
          f"train_loss points ({rows:,} metric rows, {backend}), max_points=400:")  # fmt: skip
    print(f"  machine load average (1 min): {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"  curves_payload in process (queries + payload): {result['in_process_ms']:.0f} ms "
          f"wall, {result['in_process_cpu_ms']:.0f} ms CPU")  # fmt: skip
    print(f"  GET /ui/api/curves (one request, all runs): {result['batch_ms']:.0f} ms median, "
          f"{result['batch_kb']:.0f} KiB of JSON before gzip")  # fmt: skip
    print(f"  GET /runs/{{id}}/metrics x {args.runs} (one request per run): "
          f"{result['per_run_ms']:.0f} ms")  # fmt: skip
    if args.browser:
        print(f"  chromium fetch + draw of the 5 charts: first load {result['draw_first_ms']:.0f}"
              f" ms, median of 3 loads {result['draw_median_ms']:.0f} ms")  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(base: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/ui/login", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError("the API did not answer /ui/login")


if __name__ == "__main__":
    main()
