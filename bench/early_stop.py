"""Early stopping measured: one learning-rate grid trained in full and with `early_stop`.

    python bench/early_stop.py                       # 7 learning rates, 1e-4 .. 1e-1
    python bench/early_stop.py --max-inputs 30000    # a quicker pass

Each variant runs `sweeps run FILE` (embedded Redis, SQLite, the API and one worker) in a
fresh folder, so nothing is reused between them, and is timed from start to table. Then each
variant's SQLite file gives the runs' statuses, inputs trained and final validation loss.
Prints one JSON object per variant and a markdown summary for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
LEARNING_RATES = [0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1]

TEMPLATE = """\
matrix:
  lr: {lrs}
experiment_name: bench/asha_cnn_${{matrix_slug}}
train_set: |
  ClassLogitsDataset(fmnist_dataset(train=True), num_classes=10, tuple_position=1)
validation_set: |
  ClassLogitsDataset(
      torch.utils.data.Subset(fmnist_dataset(train=False), range(1_000)),
      num_classes=10, tuple_position=1,
  )
batch_size: 64
learnrate: ${{lr}}
optimizer: AdamW
loss_function: ce
max_inputs: {max_inputs}
num_inputs_between_validations: {every}
seed: 1
model: |
  nn.Sequential(
      nn.Conv2d(1, 16, 5, stride=2), nn.ReLU(),
      nn.Conv2d(16, 32, 3, stride=2), nn.ReLU(),
      nn.Flatten(), nn.Linear(32 * 5 * 5, 10),
  )
"""
EARLY_STOP = """\
early_stop:
  metric: validation_loss
  min_inputs: {min_inputs}
  reduction_factor: 3
"""


def sweep_file(max_inputs: int, early: bool) -> str:
    every = max_inputs // 6
    text = TEMPLATE.format(lrs=LEARNING_RATES, max_inputs=max_inputs, every=every)
    return text + (EARLY_STOP.format(min_inputs=every) if early else "")


def run_variant(name: str, text: str, folder: Path) -> dict[str, Any]:
    folder.mkdir(parents=True)
    (folder / "sweep.yaml").write_text(text)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": os.environ.get(
        "OMP_NUM_THREADS", "1")}  # fmt: skip
    env.pop("SWEEPS_DATABASE_URL", None)
    started = time.perf_counter()
    done = subprocess.run(
        [str(Path(sys.executable).with_name("sweeps")), "run", "sweep.yaml"],
        cwd=folder, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{name}: sweeps run failed\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return {"variant": name, "wall_seconds": round(seconds, 1), "runs": _runs(folder)}


def _runs(folder: Path) -> list[dict[str, Any]]:
    db = sqlite3.connect(folder / ".sweeps" / "sweeps.db")
    rows = db.execute(
        "SELECT r.id, r.params, r.status, r.inputs_seen, r.train_seconds, "
        "(SELECT value FROM metrics m WHERE m.run_id = r.id AND m.key = 'validation_loss' "
        " ORDER BY step DESC LIMIT 1) FROM runs r ORDER BY r.id"
    ).fetchall()
    db.close()
    return [
        {"lr": json.loads(params)["lr"], "status": status, "inputs": inputs,
         "train_seconds": seconds, "validation_loss": loss}
        for _, params, status, inputs, seconds, loss in rows
    ]  # fmt: skip


def summary(results: list[dict[str, Any]]) -> str:
    lines = ["| variant | inputs trained | wall time | best run (lr) | its validation loss |",
             "|---|---:|---:|---:|---:|"]  # fmt: skip
    for result in results:
        runs = result["runs"]
        best = min(runs, key=lambda r: r["validation_loss"] if r["status"] == "succeeded"
                   else float("inf"))  # fmt: skip
        inputs = sum(r["inputs"] for r in runs)
        lines.append(f"| {result['variant']} | {inputs:,} | {result['wall_seconds']:.0f} s | "
                     f"{best['lr']} | {best['validation_loss']:.5f} |")  # fmt: skip
    lines += ["", "| lr | " + " | ".join(r["variant"] for r in results) + " |",
              "|---:|" + "---|" * len(results)]  # fmt: skip
    for i, lr in enumerate(LEARNING_RATES):
        cells = [f"{r['runs'][i]['status']}, {r['runs'][i]['inputs']:,} inputs, "
                 f"loss {r['runs'][i]['validation_loss']:.5f}" for r in results]  # fmt: skip
        lines.append(f"| {lr} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-inputs", type=int, default=60_000)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-asha-") as tmp:
        for name, early in (("full", False), ("early_stop", True)):
            result = run_variant(name, sweep_file(args.max_inputs, early), Path(tmp) / name)
            print(json.dumps(result), flush=True)
            results.append(result)
    print(summary(results))


if __name__ == "__main__":
    main()
