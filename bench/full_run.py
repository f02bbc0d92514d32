"""One seed-table row trained through the engine, start to end, with wall time and results.

    python bench/full_run.py --row vit_7_4_16 --precision bf16 --compile --json out/full.json

Prints `progress <inputs> <unix time>` lines while it trains (bench/sweep_slice.py reads them)
and a `result` JSON line with the summary, wall time, peak GPU memory and the process's peak host
memory. Stopped by SIGTERM, it prints a `stopped` JSON line with the peaks so far, and exits.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import torch  # noqa: E402
from train_throughput import ROWS, row_config  # noqa: E402

from shared.sweepfile.run_config import RunConfig  # noqa: E402
from worker.engine import evaluate, train_run  # noqa: E402
from worker.engine.provenance import device_name  # noqa: E402

# --smoke: the same pipeline on a few hundred validation/held-out images (for testing scripts).
SMOKE_VALIDATION = """
ClassLogitsDataset(
    torch.utils.data.TensorDataset(
        *[t[:300] for t in fmnist_dataset(train=False, shape=SHAPE).tensors]
    ),
    num_classes=CLASSES, tuple_position=1, label_to_index=True,
)
"""

TORCHVISION_AUGMENT = "VT.TrivialAugmentWide()"
# --augment: the seed's augment as the file has it, or one of the engine's device versions
AUGMENTS = {
    "file": TORCHVISION_AUGMENT,
    "twin": "TrivialAugmentWideOnDevice()",
    "per-sample": "TrivialAugmentWidePerSample()",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--row", default="vit_7_4_16", choices=sorted(ROWS))
    parser.add_argument("--max-inputs", type=int, default=None, help="default: the file's")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--step-graph", action="store_true", help="the step as one CUDA graph")
    parser.add_argument("--device", default=None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument(
        "--augment", default="file", choices=sorted(AUGMENTS),
        help="the file's TrivialAugmentWide, or a device version instead",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="tiny validation sets")
    parser.add_argument("--json", default=None, help="write the result here")
    args = parser.parse_args(argv)
    config: dict[str, Any] = {**row_config(args.row), "precision": args.precision,
                              "compile": args.compile, "seed": args.seed,
                              "step_graph": args.step_graph}  # fmt: skip
    if args.max_inputs:
        config["max_inputs"] = args.max_inputs
    if args.augment != "file":
        transforms = config["train_input_transforms"]
        if TORCHVISION_AUGMENT not in transforms:
            parser.error(f"row {args.row} has no {TORCHVISION_AUGMENT} to replace")
        config["train_input_transforms"] = transforms.replace(
            TORCHVISION_AUGMENT, AUGMENTS[args.augment]
        )
    if args.smoke:
        config["validation_set"] = SMOKE_VALIDATION
        evaluate.HELDOUT_SIZE = 300
    points: dict[str, dict[int, float]] = {}

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))

    def peaks() -> dict[str, float | None]:
        gpu = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
        host = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return {"peak_gpu_mib": gpu / 2**20 if gpu is not None else None, "peak_host_mib": host}

    def on_term(signum: int, frame: Any) -> None:
        print("stopped " + json.dumps({"row": args.row, **peaks()}), flush=True)
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)

    def report(event: str, **payload: Any) -> None:
        if event == "progress":
            print(f"progress {payload['inputs']} {time.time():.3f}", flush=True)
        elif event == "metrics":
            for key, step, value in payload["points"]:
                points.setdefault(key, {})[step] = value

    started = time.perf_counter()
    summary = train_run(
        RunConfig.from_config(config), report=report, device=device, data_dir=args.data_dir
    )
    wall = time.perf_counter() - started
    result = {
        "row": args.row, "max_inputs": config["max_inputs"], "precision": args.precision,
        "augment": args.augment, "seed": args.seed,
        "compile": args.compile, "step_graph": args.step_graph,
        "device_name": device_name(device), "torch": torch.__version__,
        "wall_seconds": wall, "inputs": summary["inputs"],
        "train_seconds": summary.get("train_seconds"),
        "accuracy_argmax": summary.get("accuracy_argmax"),
        "accuracy_svc": summary.get("accuracy_svc"),
        "accuracy_svc_heldout": summary.get("accuracy_svc_heldout"),
        "validation_loss": summary.get("validation_loss"),
        "model_params": summary.get("model_params"),
        "validations": len(points.get("validation_loss", {})),
        **peaks(),
    }  # fmt: skip
    print("result " + json.dumps(result), flush=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
