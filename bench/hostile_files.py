"""Hostile sweep files against a real API (issue 20, "the door"): status and time of each.

    .venv/bin/python bench/hostile_files.py                    # this checkout
    .venv/bin/python bench/hostile_files.py --repo ../before   # another checkout's API

Starts the API of `--repo` under uvicorn on a fresh SQLite database (migrated with that
checkout's migrations), submits one small valid sweep (so `GET /sweeps/1` has something to
read), then POSTs each hostile file to `/sweeps` (the merge-key bomb to `/sweeps/preview` too)
and records the status and wall time. While each file is in flight a second client sends
`GET /sweeps/1` after 0.1 s; its latency shows whether one request holds up the others.
A request over `--timeout` seconds is recorded as a timeout, and the API is restarted so the
next file is not measured behind it. Prints a Markdown table; `--out` writes JSON too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.stack import ManagedProcess, free_port, wait_until  # noqa: E402

TOKEN = "swp_bench-hostile-files-0123456789"
BASE = """\
experiment_name: hostile/x
model: |
  nn.Linear(4, 2)
train_set: |
  torch.utils.data.TensorDataset(torch.randn(8, 4), torch.randn(8, 2))
batch_size: 4
learnrate: 0.1
optimizer: SGD
max_inputs: 64
"""
CORPUS = REPO / "tests" / "corpus"


def merge_bomb(levels: int) -> str:
    """The issue's file: each level merges the previous mapping twice (2^levels pairs)."""
    lines = ["b0: &b0 {k0: 0}"]
    for i in range(1, levels + 1):
        lines.append(f"b{i}: &b{i} {{<<: [*b{i - 1}, *b{i - 1}], k{i}: {i}}}")
    return BASE + "\n".join(lines) + "\n"


def cases(levels: list[int]) -> list[tuple[str, str, str]]:
    """(name, path, text) of each hostile request."""
    found = [(f"merge-key bomb, {n} levels", "/sweeps", merge_bomb(n)) for n in levels]
    deepest = levels[-1]
    found.append((f"merge-key bomb, {deepest} levels", "/sweeps/preview", merge_bomb(deepest)))
    for name, old, new in [
        ("max_inputs: .inf", "max_inputs: 64", "max_inputs: .inf"),
        ("max_inputs: .nan", "max_inputs: 64", "max_inputs: .nan"),
        ("learnrate: .nan", "learnrate: 0.1", "learnrate: .nan"),
        ("batch_size: .inf", "batch_size: 4", "batch_size: .inf"),
        ("integer of 5,000 digits", "max_inputs: 64", "max_inputs: " + "9" * 5000),
    ]:
        found.append((name, "/sweeps", BASE.replace(old, new)))
    for name, file in [
        ("nesting 20,000 deep", "yaml_deep_nesting.yaml"),
        ("alias bomb (billion laughs)", "yaml_alias_bomb.yaml"),
    ]:
        found.append((name, "/sweeps", (CORPUS / file).read_text()))
    return found


def start_redis(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A private redis-server (the valid sweep's task messages go there, and stay)."""
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(folder)]  # fmt: skip
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, start_new_session=True)
    return server, f"redis://127.0.0.1:{port}/0"


def start_api(repo: Path, folder: Path, broker: str) -> ManagedProcess:
    """The API of `repo` on a fresh SQLite database in `folder`, once /healthz answers."""
    database = folder / f"db-{time.monotonic_ns()}.sqlite"
    env = {
        **os.environ,
        "PYTHONPATH": str(repo),
        "SWEEPS_DATABASE_URL": f"sqlite:///{database}",
        "SWEEPS_BROKER_URL": broker,
        "SWEEPS_API_TOKEN": TOKEN,
        "SWEEPS_ARTIFACT_DIR": str(folder / "artifacts"),
    }
    migrate = [sys.executable, "-m", "shared.db.migrate", "upgrade"]
    subprocess.run(migrate, env=env, cwd=repo, check=True, capture_output=True)
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "api.main:create_app", "--factory",
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]  # fmt: skip
    log = folder / "api.log"
    handle = open(log, "ab")  # noqa: SIM115 - closed by ManagedProcess
    popen = subprocess.Popen(argv, env=env, cwd=repo, stdout=handle, stderr=subprocess.STDOUT,
                             start_new_session=True)  # fmt: skip
    api = ManagedProcess("api", popen, log, url=f"http://127.0.0.1:{port}", _log_handle=handle)

    def healthy() -> bool:
        try:
            return httpx.get(f"{api.url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(healthy, timeout=60, what="the API", diagnostics=api.log_tail)
    client = httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {TOKEN}"})
    first = client.post("/sweeps", content=BASE, headers={"Content-Type": "application/x-yaml"})
    assert first.status_code == 201, first.text
    return api


def measure(api: ManagedProcess, path: str, text: str, timeout: float) -> dict[str, Any]:
    """Status and seconds of one POST, and the latency of a GET sent while it is in flight."""
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-yaml"}
    side: dict[str, float] = {}

    def concurrent_get() -> None:
        time.sleep(0.1)
        started = time.perf_counter()
        try:
            httpx.get(f"{api.url}/sweeps/1", headers=headers, timeout=timeout)
            side["get_s"] = time.perf_counter() - started
        except httpx.TimeoutException:
            side["get_s"] = float("inf")

    thread = threading.Thread(target=concurrent_get)
    thread.start()
    started = time.perf_counter()
    try:
        response = httpx.post(f"{api.url}{path}", content=text, headers=headers, timeout=timeout)
        status: int | str = response.status_code
        detail = response.json().get("detail") if status != 500 else response.text[:80]
    except httpx.TimeoutException:
        status, detail = "timeout", None
    seconds = time.perf_counter() - started
    thread.join()
    where = detail if isinstance(detail, dict) else {}
    return {"status": status, "seconds": seconds, "get_s": side.get("get_s"),
            "line": where.get("line"), "key": where.get("key")}  # fmt: skip


def run(repo: Path, levels: list[int], repeats: int, timeout: float) -> list[dict[str, Any]]:
    results = []
    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
        redis, broker = start_redis(Path(tmp))
        api = start_api(repo, Path(tmp), broker)
        try:
            for name, path, text in cases(levels):
                tries = []
                for _ in range(repeats):
                    tries.append(measure(api, path, text, timeout))
                    if tries[-1]["status"] == "timeout" or tries[-1]["seconds"] > 2:
                        break  # slow: once is enough, and a timeout leaves the API busy
                if tries[-1]["status"] == "timeout":
                    api.stop(timeout=5)
                    api = start_api(repo, Path(tmp), broker)
                best = min(tries, key=lambda t: t["seconds"])
                median = statistics.median(t["seconds"] for t in tries)
                results.append({"case": name, "path": path, "bytes": len(text.encode()),
                                "tries": len(tries), **best, "median_s": median})  # fmt: skip
                print(json.dumps(results[-1]), file=sys.stderr)
        finally:
            api.stop(timeout=5)
            redis.terminate()
            redis.wait()
    return results


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| file | path | bytes | status | time (median) | concurrent GET /sweeps/1 | line, key |",
        "|---|---|---:|---|---:|---:|---|",
    ]
    for r in results:
        get = "-" if r["get_s"] is None else f"{r['get_s'] * 1000:,.0f} ms"
        place = f"{r['line']}, {r['key']}" if r["line"] or r["key"] else ""
        lines.append(
            f"| {r['case']} | `{r['path']}` | {r['bytes']:,} | {r['status']} | "
            f"{r['median_s'] * 1000:,.0f} ms | {get} | {place} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", type=Path, default=REPO, help="the checkout whose API to run")
    parser.add_argument("--levels", default="18,21,24", help="merge-bomb depths (comma-separated)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    levels = [int(n) for n in args.levels.split(",")]
    results = run(args.repo.resolve(), levels, args.repeats, args.timeout)
    summary = {"repo": str(args.repo), "machine": platform.node(), "cpus": os.cpu_count(),
               "load": os.getloadavg(), "date": datetime.now(UTC).isoformat(timespec="seconds"),
               "results": results}  # fmt: skip
    print(table(results))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1, default=str))


if __name__ == "__main__":
    main()
