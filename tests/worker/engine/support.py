"""Engine test helpers: tiny configs and a recording `report`. Imports torch only, so the
engine tests also run where none of the service's packages are installed (bench/gpu.sh)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

TRAIN_SET = """
g = torch.Generator().manual_seed(1)
X = torch.rand(N_TRAIN, 1, 8, 8, generator=g)
Y = (X.mean((1, 2, 3)) * 997).long() % CLASSES
ClassLogitsDataset(torch.utils.data.TensorDataset(X, Y), num_classes=CLASSES, tuple_position=1)
"""
VALIDATION_SET = """
ClassLogitsDataset(
    torch.utils.data.TensorDataset(X[:N_VAL] * 0.9, Y[:N_VAL]),
    num_classes=CLASSES, tuple_position=1,
)
"""
MODEL = """
class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(64, CODE), nn.ReLU())
        self.linear = nn.Linear(CODE, CLASSES)

    def forward(self, x):
        return self.linear(self.encoder(x))

Tiny()
"""


def tiny_config(**overrides: Any) -> dict[str, Any]:
    """A complete run configuration over a 256-image generated dataset and a 1k-param model."""
    config: dict[str, Any] = {
        "experiment_name": "tiny",
        "globals": {"N_TRAIN": 256, "N_VAL": 100, "CLASSES": 4, "CODE": 12},
        "train_set": TRAIN_SET,
        "validation_set": VALIDATION_SET,
        "model": MODEL,
        "trainer": "experiments.reptrainer.RepresentationClassTrainer",
        "batch_size": 32,
        "learnrate": 0.003,
        "optimizer": "AdamW",
        "loss_function": "l2",
        "max_inputs": 1000,
        "seed": 7,
    }
    config.update(overrides)
    return {k: v for k, v in config.items() if v is not None}


class Recorder:
    """A `report` callback that keeps every event, with helpers to read the metric points."""

    def __init__(self, fail_at: tuple[str, int] | None = None) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.fail_at = fail_at  # raise when reporting this (key, step): a simulated crash

    def __call__(self, event: str, **payload: Any) -> None:
        if event == "metrics" and self.fail_at is not None:
            for key, step, _ in payload["points"]:
                if (key, step) == self.fail_at:
                    raise RuntimeError(f"simulated crash while reporting {key}@{step}")
        self.events.append((event, payload))

    def points(self) -> list[tuple[str, int, float]]:
        return [p for e, payload in self.events if e == "metrics" for p in payload["points"]]

    def series(self) -> dict[str, dict[int, float]]:
        out: dict[str, dict[int, float]] = defaultdict(dict)
        for key, step, value in self.points():
            out[key][step] = value
        return dict(out)

    def steps(self, key: str) -> list[int]:
        return [step for k, step, _ in self.points() if k == key]

    def of(self, event: str) -> list[dict[str, Any]]:
        return [payload for e, payload in self.events if e == event]


# The seed file's input transforms: torchvision's augment between two lambdas.
SEED_TRANSFORMS = (
    "[\n    lambda x: (x * 255).to(torch.uint8),\n    VT.TrivialAugmentWide(),\n"
    "    lambda x: x.to(torch.float32) / 255.,\n]"
)


def run_compiled_seed_step(device: str, **overrides: Any) -> tuple[dict, list[float], Any]:
    """Six epochs of 96 images through the seed's transforms with `compile: true`, from a fresh
    dynamo state: (summary, validation losses in order, dynamo's counters)."""
    import torch
    from torch._dynamo.utils import counters

    from shared.sweepfile.run_config import RunConfig
    from worker.engine import train_run

    torch._dynamo.reset()
    counters.clear()
    globals_ = {**tiny_config()["globals"], "N_TRAIN": 96}
    config = tiny_config(globals=globals_, train_input_transforms=SEED_TRANSFORMS, compile=True,
                         max_inputs=None, max_epoch=6, scheduler=None, **overrides)  # fmt: skip
    recorder = Recorder()
    summary = train_run(RunConfig.from_config(config), report=recorder, device=device)
    losses = [v for _, v in sorted(recorder.series()["validation_loss"].items())]
    return summary, losses, counters
