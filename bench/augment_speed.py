"""Time torchvision's TrivialAugmentWide (one op per batch) vs the device versions, per batch.

python bench/augment_speed.py --device cuda --batch 64 --repeats 200

The device versions compute all 14 operations and select, so eagerly they launch many small
kernels; compiled (as `compile: true` runs them, with CUDA graphs on a GPU) they fuse.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torchvision.transforms as VT  # noqa: E402

from worker.engine.augment import (  # noqa: E402
    TrivialAugmentWideOnDevice,
    TrivialAugmentWidePerSample,
)


def compiled(module: torch.nn.Module, device: str):
    fn = torch.compile(module.to(device), dynamic=False,
                       mode="reduce-overhead" if device == "cuda" else None)  # fmt: skip

    def call(x: torch.Tensor) -> torch.Tensor:
        if device == "cuda":
            torch.compiler.cudagraph_mark_step_begin()
        return fn(x)

    return call


def per_batch_ms(transform, x: torch.Tensor, repeats: int) -> float:
    for _ in range(5):
        transform(x)
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        transform(x)
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / repeats * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument(
        "--compiled", action=argparse.BooleanOptionalAction, default=True,
        help="also time the device versions compiled (each compiles first)",
    )  # fmt: skip
    args = parser.parse_args()
    x = (torch.rand(args.batch, 3, 28, 28, device=args.device) * 255).to(torch.uint8)
    result = {
        "device": args.device, "batch": args.batch,
        "torchvision_ms": per_batch_ms(VT.TrivialAugmentWide(), x, args.repeats),
        "per_sample_ms": per_batch_ms(TrivialAugmentWidePerSample().to(args.device), x,
                                      args.repeats),
        "on_device_ms": per_batch_ms(TrivialAugmentWideOnDevice().to(args.device), x,
                                     args.repeats),
    }  # fmt: skip
    if args.compiled:
        for name, cls in (("on_device", TrivialAugmentWideOnDevice),
                          ("per_sample", TrivialAugmentWidePerSample)):  # fmt: skip
            result[f"{name}_compiled_ms"] = per_batch_ms(compiled(cls(), args.device), x,
                                                         args.repeats)  # fmt: skip
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
