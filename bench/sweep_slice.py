"""Sweep throughput on one device at K runs at a time (each run its own process), like for like.

    # per model size: 8 copies of one row at K = 1, 2, 4, 8, 30 s each
    python bench/sweep_slice.py --rows vit_7_4_16 --copies 8 --ks 1,2,4,8 --seconds 30
    # the seed's table slice, every row to the end, at K = 1 and 4
    python bench/sweep_slice.py --ks 1,4 --max-inputs 200000 --seconds 900

Every K runs the same list of runs (rows x copies, in the same order), starting a run whenever
one of the K slots is free, until all finish or `--seconds` pass; runs still going then get
SIGTERM. Each process gets cores / K CPU threads, as the worker gives them. Sweep throughput at
K = inputs trained by the end / wall time, where a stopped run's inputs at the deadline are
interpolated from its timestamped progress lines. The comparison is like for like when every K
finished the whole list (same work: the ratio is the ratio of wall times) or when the list is
copies of one row (same work per run, whichever runs started). `steady inputs/s` sums each
run's rate after its first progress line: the GPU sharing alone, without process start-up,
compilation and the final evaluation.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from train_throughput import ROWS  # noqa: E402

TABLE_ORDER = ["rn18", "vit_7_4_16", "vit_7_4_8", "vit_7_4_32", "vit_7_8_8", "vit_7_8_16",
               "vit_7_8_16_784", "vit_7_8_8_1024", "vit_7_4_4", "vit_7_16_8", "cnn",
               "vit_7_8_12_768"]  # fmt: skip


@dataclass
class Run:
    row: str
    log: Path
    started: float  # seconds since the sweep started
    proc: subprocess.Popen
    progress: list[tuple[float, int]] = field(default_factory=list)  # (seconds, inputs)
    result: dict[str, Any] | None = None
    stopped: dict[str, Any] | None = None
    ended: float | None = None

    def read(self, t0: float) -> None:
        self.progress.clear()
        for line in self.log.read_text(errors="replace").splitlines():
            word, _, rest = line.partition(" ")
            if word == "progress":
                inputs, stamp = rest.split()
                self.progress.append((float(stamp) - t0, int(inputs)))
            elif word == "result":
                self.result = json.loads(rest)
            elif word == "stopped":
                self.stopped = json.loads(rest)

    def inputs_at(self, t: float) -> float:
        """Inputs trained by time t: the final count if it finished, else interpolated between
        the progress lines around t (extrapolated from the last two)."""
        if self.result is not None:
            return float(self.result["inputs"])
        before = [p for p in self.progress if p[0] <= t]
        after = [p for p in self.progress if p[0] > t]
        if not before:
            return 0.0
        s1, n1 = before[-1]
        if after:
            s2, n2 = after[0]
        elif len(before) > 1:
            s2, n2 = before[-2]
        else:
            return float(n1)
        return n1 + (n2 - n1) * (t - s1) / (s2 - s1) if s2 != s1 else float(n1)

    def steady_rate(self) -> float | None:
        """inputs/s between its first and last progress lines (no start-up, no final eval)."""
        if len(self.progress) < 2 or self.progress[-1][0] <= self.progress[0][0]:
            return None
        (s1, n1), (s2, n2) = self.progress[0], self.progress[-1]
        return (n2 - n1) / (s2 - s1)


def sweep(k: int, rows: list[str], args: argparse.Namespace, extra: list[str]) -> dict[str, Any]:
    logs = Path(args.log_dir) / f"k{k}"
    logs.mkdir(parents=True, exist_ok=True)
    # As the worker does (worker.celery_app.share_cores): K processes share the host's cores.
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, str(max(1, len(os.sched_getaffinity(0)) // k)))
    queue = list(enumerate(rows))
    running: list[Run] = []
    done: list[Run] = []
    t0 = time.time()
    deadline = t0 + args.seconds
    while queue or running:
        while queue and len(running) < k and time.time() < deadline:
            i, row = queue.pop(0)
            log = logs / f"{i:02d}_{row}.log"
            with log.open("w") as fh:
                proc = subprocess.Popen(
                    [sys.executable, str(REPO / "bench" / "full_run.py"), "--row", row, *extra],
                    stdout=fh, stderr=subprocess.STDOUT, cwd=REPO, env=env,
                )  # fmt: skip
            running.append(Run(row, log, time.time() - t0, proc))
        for run in list(running):
            if run.proc.poll() is not None:
                run.ended = time.time() - t0
                running.remove(run)
                done.append(run)
        if time.time() >= deadline:
            break
        time.sleep(0.2)
    end = args.seconds if queue or running else max(r.ended or 0.0 for r in done)
    for run in running:
        run.proc.send_signal(signal.SIGTERM)
    for run in running:
        try:
            run.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            run.proc.kill()
            run.proc.wait()
        done.append(run)
    for run in done:
        run.read(t0)
    rates = [r.steady_rate() for r in done]
    total = sum(r.inputs_at(end) for r in done)
    runs = [
        {"row": r.row, "started_s": round(r.started, 2), "ended_s": r.ended,
         "completed": r.result is not None, "returncode": r.proc.returncode,
         "inputs_at_end": round(r.inputs_at(end)), "steady_inputs_per_s": rate,
         **{key: (r.result or r.stopped or {}).get(key) for key in
            ("peak_gpu_mib", "peak_host_mib", "wall_seconds", "accuracy_argmax")}}
        for r, rate in zip(done, rates, strict=True)
    ]  # fmt: skip
    failed = [r for r in runs if not r["completed"] and r["returncode"] not in (143, -15, -9)]
    return {
        "k": k, "runs_listed": len(rows), "runs_started": len(done),
        "runs_completed": sum(r["completed"] for r in runs), "failed": len(failed),
        "complete": not queue and all(r["completed"] for r in runs),
        "wall_seconds": end, "inputs": total, "inputs_per_s": total / end if end else 0.0,
        "steady_inputs_per_s": sum(x for x in rates if x),
        "max_peak_gpu_mib": max((r["peak_gpu_mib"] or 0 for r in runs), default=0),
        "max_peak_host_mib": max((r["peak_host_mib"] or 0 for r in runs), default=0),
        "runs": runs,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", default="1,4", help="comma list of runs at a time")
    parser.add_argument("--rows", default=",".join(TABLE_ORDER))
    parser.add_argument("--copies", type=int, default=1, help="each row this many times")
    parser.add_argument("--max-inputs", type=int, default=200_000)
    parser.add_argument("--seconds", type=float, default=60.0, help="deadline per K")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--step-graph", action="store_true")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--log-dir", default="bench-out/sweep-logs")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    rows = [row for row in args.rows.split(",") for _ in range(args.copies)]
    unknown = sorted({r for r in rows if r not in ROWS})
    if unknown:
        parser.error(f"unknown rows: {unknown}")
    ks = [int(k) for k in args.ks.split(",")]
    extra = ["--precision", args.precision, "--max-inputs", str(args.max_inputs)]
    extra += ["--compile"] * args.compile + ["--smoke"] * args.smoke
    extra += ["--step-graph"] * args.step_graph
    extra += ["--data-dir", args.data_dir] if args.data_dir else []

    results = []
    for k in ks:
        results.append(sweep(k, rows, args, extra))
        r = results[-1]
        print(f"K={k}: {r['inputs_per_s']:.0f} inputs/s ({r['steady_inputs_per_s']:.0f} steady) "
              f"over {r['wall_seconds']:.1f} s, {r['runs_completed']}/{r['runs_listed']} runs "
              f"completed, {r['failed']} failed", flush=True)  # fmt: skip
    like_for_like = len(set(rows)) == 1 or all(r["complete"] for r in results)
    base = results[0]["inputs_per_s"] or None
    print(f"\n{len(rows)} runs ({','.join(dict.fromkeys(rows))}), {args.max_inputs:,} inputs "
          f"each, {args.precision}{' compile' if args.compile else ''}; like for like: "
          f"{'yes' if like_for_like else 'NO (rows differ and not every K finished)'}")  # fmt: skip
    print(f"{'K':>3} {'inputs/s':>10} {'x K=' + str(ks[0]):>7} {'steady/s':>10} {'wall s':>7} "
          f"{'done':>6} {'GPU MiB/run':>12} {'host MiB/proc':>14}")  # fmt: skip
    for r in results:
        ratio = f"{r['inputs_per_s'] / base:.2f}" if base else "-"
        print(f"{r['k']:>3} {r['inputs_per_s']:>10.0f} {ratio:>7} {r['steady_inputs_per_s']:>10.0f}"
              f" {r['wall_seconds']:>7.1f} {r['runs_completed']:>3}/{r['runs_listed']:<2}"
              f" {r['max_peak_gpu_mib']:>12.0f} {r['max_peak_host_mib']:>14.0f}")  # fmt: skip
    summary = {"rows": rows, "max_inputs_per_run": args.max_inputs, "seconds": args.seconds,
               "precision": args.precision, "compile": args.compile,
               "step_graph": args.step_graph,
               "like_for_like": like_for_like, "sweeps": results}  # fmt: skip
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary, indent=1))
    return 0 if all(r["failed"] == 0 for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
