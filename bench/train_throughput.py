"""Training inputs/s: this engine vs a naive seed-style loop, same model/transforms/device.

The naive loop is what a straightforward trainer does: a per-sample Dataset and a DataLoader,
each batch copied to the device, the file's transforms, the model in fp32 eager, `.item()` every
step. The engine runs `train_run` on the same configuration (its fast tensor path, optionally
`precision: bf16` / `compile: true`). Both are timed in one process on one device, after
warm-up steps, with the device synchronised at the ends of the timed stretch.

    python bench/train_throughput.py --device cpu --row vit_7_4_16 --steps 40 --warmup 5
    python bench/train_throughput.py --device cuda --steps 2000 --modes naive,engine+bf16+compile

Besides wall-clock inputs/s it records inputs per CPU-second of the process (`cpu_inputs_per_s`),
which a shared, loaded CPU machine disturbs less.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from shared.sweepfile import RunSettings, parse_sweep  # noqa: E402
from shared.sweepfile.run_config import RunConfig  # noqa: E402
from worker.engine import train_run  # noqa: E402
from worker.engine.build import build_model, make_scheduler  # noqa: E402
from worker.engine.losses import make_loss  # noqa: E402
from worker.engine.namespace import config_value  # noqa: E402
from worker.engine.provenance import device_name  # noqa: E402

VIT = "fmnist_vit.yaml"
# Table rows by name: (example file, matrix parameters that pick the row).
ROWS: dict[str, tuple[str, dict[str, int]]] = {
    "vit_7_4_16": (VIT, {"layer": 4, "head": 16, "hidden": 256, "mlp": 512, "cs": 128}),
    "vit_7_4_8": (VIT, {"layer": 4, "head": 8, "hidden": 256, "mlp": 512, "cs": 128}),
    "vit_7_4_32": (VIT, {"layer": 4, "head": 32, "hidden": 256, "mlp": 512, "cs": 128}),
    "vit_7_8_8": (VIT, {"layer": 8, "head": 8, "hidden": 256, "mlp": 512, "cs": 128}),
    "vit_7_8_16": (VIT, {"layer": 8, "head": 16, "hidden": 256, "mlp": 512, "cs": 128}),
    "vit_7_8_16_784": (VIT, {"layer": 8, "head": 16, "hidden": 256, "mlp": 512, "cs": 784}),
    "vit_7_8_8_1024": (VIT, {"layer": 8, "head": 8, "hidden": 256, "mlp": 1024, "cs": 128}),
    "vit_7_4_4": (VIT, {"layer": 4, "head": 4, "hidden": 256, "mlp": 512, "cs": 128}),
    "vit_7_16_8": (VIT, {"layer": 16, "head": 8, "hidden": 256, "mlp": 512, "cs": 128}),
    "vit_7_8_12_768": (VIT, {"layer": 8, "head": 12, "hidden": 768, "mlp": 512, "cs": 128}),
    "cnn": ("fmnist_cnn.yaml", {}),
    "rn18": ("fmnist_rn18.yaml", {}),
}
# Validation during the engine's timed runs (every `warmup` steps; excluded from the timing).
SMALL_VALIDATION = """
ClassLogitsDataset(
    torch.utils.data.TensorDataset(
        *[t[:100] for t in fmnist_dataset(train=False, shape=SHAPE).tensors]
    ),
    num_classes=CLASSES, tuple_position=1, label_to_index=True,
)
"""


def row_config(row: str) -> dict[str, Any]:
    """The resolved configuration of one seed-table row from the example files."""
    file, params = ROWS[row]
    for run in parse_sweep((REPO / "examples" / file).read_text()).runs:
        if all(run.params.get(k) == v for k, v in params.items()):
            return run.config
    raise KeyError(row)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PerSample(Dataset):
    """The seed's way: one Python __getitem__ per sample, collated by the DataLoader."""

    def __init__(self, source: Any) -> None:
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> tuple:
        return tuple(self.source[index])


def naive_loop(config: dict, device: torch.device, steps: int, warmup: int, data_dir: str | None,
               num_workers: int) -> dict[str, Any]:  # fmt: skip
    """Seed-style loop: per-sample Dataset + DataLoader, fp32 eager, .item() every step."""
    settings = RunSettings.from_config(config)
    torch.manual_seed(0)
    model, ns = build_model(config, data_dir)
    model.to(device).train()
    train_set = PerSample(config_value(config, "train_set", ns))
    loss_fn = make_loss(config_value(config, "loss_function", ns))
    transforms = list(config_value(config, "train_input_transforms", ns) or [])
    # the seed's optimizer as it built it: no fused kernel
    optimizer = getattr(torch.optim, settings.optimizer)(model.parameters(), lr=settings.learnrate)
    scheduler = make_scheduler(settings, optimizer)
    loader = DataLoader(train_set, batch_size=settings.batch_size, shuffle=True,
                        num_workers=num_workers, pin_memory=device.type == "cuda")  # fmt: skip
    done, inputs, total_loss, started = 0, 0, 0.0, None
    while done < warmup + steps:
        for batch in loader:
            if done == warmup:
                _sync(device)
                started, cpu_started, inputs = time.perf_counter(), time.process_time(), 0
            x, target = batch[0].to(device), batch[1].to(device)
            for transform in transforms:
                x = transform(x)
            loss = loss_fn(model(x), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            total_loss += loss.item()
            inputs += len(x)
            done += 1
            if done == warmup + steps:
                break
    _sync(device)
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    return {"inputs_per_s": inputs / seconds, "cpu_inputs_per_s": inputs / cpu,
            "timed_inputs": inputs, "seconds": seconds}  # fmt: skip


def engine_run(config: dict, device: torch.device, steps: int, warmup: int, data_dir: str | None,
               precision: str, compile_: bool, graph: bool = False) -> dict[str, Any]:  # fmt: skip
    """train_run; the rate is taken between a validation after `warmup` steps and the end."""
    batch = int(config["batch_size"])
    config = {
        **config,
        "trainer": "Trainer",  # no SVC threads competing with the timed steps
        "validation_set": SMALL_VALIDATION,
        "max_inputs": (warmup + steps) * batch,
        "num_inputs_between_validations": warmup * batch,
        "num_epochs_between_validations": 10**6,
        "precision": precision,
        "compile": compile_,
        "step_graph": graph,
        "seed": 0,
    }
    points: dict[str, dict[int, float]] = {}
    # CPU time of the timed stretch: from the warm-up validation's report to the last progress
    # report, which the engine sends just before it runs the final validation.
    cpu_marks: dict[str, float] = {}

    def report(event: str, **payload: Any) -> None:
        if event == "progress":
            cpu_marks["progress"] = time.process_time()
        for key, step, value in payload.get("points", []) if event == "metrics" else []:
            points.setdefault(key, {})[step] = value
            if key == "validation_loss" and step == warmup * batch:
                cpu_marks["warm"] = time.process_time()

    started = time.perf_counter()
    summary = train_run(
        RunConfig.from_config(config), report=report, device=device, data_dir=data_dir
    )
    wall = time.perf_counter() - started
    seconds = points["train_seconds"]
    warm, end = min(seconds), max(seconds)
    timed = seconds[end] - seconds[warm]
    cpu = cpu_marks["progress"] - cpu_marks["warm"]
    return {"inputs_per_s": (end - warm) / timed, "cpu_inputs_per_s": (end - warm) / cpu,
            "timed_inputs": end - warm, "seconds": timed, "wall_seconds_with_setup": wall,
            "final_train_loss": summary.get("train_loss")}  # fmt: skip


def run_mode(mode: str, config: dict, device: torch.device, args: argparse.Namespace) -> dict:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if mode == "naive":
        result = naive_loop(
            config, device, args.steps, args.warmup, args.data_dir, args.num_workers
        )
    else:
        flags = mode.split("+")[1:]
        precision = "bf16" if "bf16" in flags else "fp32"
        result = engine_run(config, device, args.steps, args.warmup, args.data_dir, precision,
                            "compile" in flags, "graph" in flags)  # fmt: skip
    if device.type == "cuda":
        result["peak_gpu_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--row", default="vit_7_4_16", choices=sorted(ROWS))
    parser.add_argument("--steps", type=int, default=50, help="timed steps per mode")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    parser.add_argument("--modes", default="naive,engine",
                        help="comma list: naive, engine, engine+bf16, engine+compile, "
                        "engine+bf16+compile, engine+bf16+graph (step_graph)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--num-workers", type=int, default=0, help="naive DataLoader workers")
    parser.add_argument("--data-dir", default=None, help="folder with the Fashion-MNIST .gz files")
    parser.add_argument("--json", default=None, help="append the results to this JSON list file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    config = row_config(args.row)
    common = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "row": args.row, "device": str(device), "device_name": device_name(device),
        "host_cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
        "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
        "batch_size": config["batch_size"], "steps": args.steps, "warmup": args.warmup,
    }  # fmt: skip
    path = Path(args.json) if args.json else None
    previous = json.loads(path.read_text()) if path and path.is_file() else []
    results: list[dict[str, Any]] = []
    naive = None
    for mode in args.modes.split(","):
        try:
            result = run_mode(mode, config, device, args)
        except Exception as exc:  # noqa: BLE001 - report the failed mode, keep measuring the rest
            result = {"error": f"{type(exc).__name__}: {exc}"}
        if mode == "naive" and "inputs_per_s" in result:
            naive = result["inputs_per_s"]
        if naive and "inputs_per_s" in result:
            result["speedup_vs_naive"] = result["inputs_per_s"] / naive
        results.append({**common, "mode": mode, **result})
        print(json.dumps(results[-1]), flush=True)
        if path:  # after every mode, so a time-boxed run keeps what it measured
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(previous + results, indent=1))
    print(f"\n{args.row} on {common['device_name']} ({device}), batch {config['batch_size']}, "
          f"{args.steps} timed steps after {args.warmup}")  # fmt: skip
    print(f"{'mode':<22} {'inputs/s':>10} {'x naive':>8} {'inputs/cpu-s':>13} {'GPU MiB':>8}")
    for r in results:
        if "error" in r:
            print(f"{r['mode']:<22} {'failed':>10}  {r['error'][:60]}")
            continue
        speed = f"{r['speedup_vs_naive']:.2f}" if "speedup_vs_naive" in r else "-"
        peak = f"{r['peak_gpu_mib']:.0f}" if "peak_gpu_mib" in r else "-"
        cpu = r["cpu_inputs_per_s"]
        print(f"{r['mode']:<22} {r['inputs_per_s']:>10.1f} {speed:>8} {cpu:>13.1f} {peak:>8}")
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
