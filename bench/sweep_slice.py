"""A slice of the seed's sweep on one device: K runs at a time, each its own process.

    python bench/sweep_slice.py --k 4 --max-inputs 200000 --deadline-s 60 --json out/k4.json

Rows start in table order as slots free up; at the deadline the runs still going are stopped
and counted by the inputs they had reported. Sweep throughput = all inputs trained / wall time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from train_throughput import ROWS  # noqa: E402

TABLE_ORDER = ["rn18", "vit_7_4_16", "vit_7_4_8", "vit_7_4_32", "vit_7_8_8", "vit_7_8_16",
               "vit_7_8_16_784", "vit_7_8_8_1024", "vit_7_4_4", "vit_7_16_8", "cnn",
               "vit_7_8_12_768"]  # fmt: skip


def _read(log: Path) -> tuple[int, dict | None]:
    inputs, result = 0, None
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("progress "):
            inputs = int(line.split()[1])
        elif line.startswith("result "):
            result = json.loads(line[len("result ") :])
            inputs = result["inputs"]
    return inputs, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=1, help="runs at a time")
    parser.add_argument("--rows", default=",".join(TABLE_ORDER))
    parser.add_argument("--max-inputs", type=int, default=200_000)
    parser.add_argument("--deadline-s", type=float, default=60.0)
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--log-dir", default="bench-out/sweep-logs")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    rows = args.rows.split(",")
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        parser.error(f"unknown rows: {unknown}")
    logs = Path(args.log_dir) / f"k{args.k}"
    logs.mkdir(parents=True, exist_ok=True)
    extra = ["--precision", args.precision, "--max-inputs", str(args.max_inputs)]
    extra += ["--compile"] * args.compile + ["--smoke"] * args.smoke
    extra += ["--data-dir", args.data_dir] if args.data_dir else []

    started = time.perf_counter()
    deadline = started + args.deadline_s
    queue, running, finished, stopped = list(rows), [], [], []
    while queue or running:
        while queue and len(running) < args.k and time.perf_counter() < deadline:
            row = queue.pop(0)
            log = logs / f"{row}.log"
            with log.open("w") as fh:
                proc = subprocess.Popen(
                    [sys.executable, str(REPO / "bench" / "full_run.py"), "--row", row, *extra],
                    stdout=fh, stderr=subprocess.STDOUT, cwd=REPO,
                )  # fmt: skip
            running.append((row, proc, log))
        for item in list(running):
            if item[1].poll() is not None:
                running.remove(item)
                finished.append(item)
        if time.perf_counter() >= deadline:
            for row, proc, log in running:
                proc.kill()
                proc.wait()
                stopped.append((row, proc, log))
            running = []
            break
        time.sleep(0.5)
    wall = time.perf_counter() - started

    runs = []
    for row, proc, log in finished + stopped:
        inputs, result = _read(log)
        runs.append({"row": row, "inputs": inputs, "completed": result is not None,
                     "returncode": proc.returncode,
                     "peak_gpu_mib": result and result.get("peak_gpu_mib"),
                     "peak_host_mib": result and result.get("peak_host_mib"),
                     "wall_seconds": result and result.get("wall_seconds")})  # fmt: skip
    total = sum(r["inputs"] for r in runs)
    summary = {
        "k": args.k, "max_inputs_per_run": args.max_inputs, "deadline_s": args.deadline_s,
        "precision": args.precision, "compile": args.compile, "wall_seconds": wall,
        "inputs": total, "inputs_per_s": total / wall if wall else 0.0,
        "runs_completed": sum(r["completed"] for r in runs), "runs_started": len(runs),
        "rows_not_started": queue, "runs": runs,
    }  # fmt: skip
    print(json.dumps(summary), flush=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary, indent=1))
    return 0 if all(r["returncode"] in (0, -9) for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
