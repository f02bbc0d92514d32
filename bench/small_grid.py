"""Issue 14's grid, three ways x two evaluations in one sitting: where small runs lose time.

    python bench/small_grid.py                      # all six, then the ratios
    python bench/small_grid.py --ways sweeps        # one way only (e.g. to read the phases)

The grid: the seed's small CNN (EncoderConv2d with three 3x3 convolutions of 8 or 16 channels,
code 128) at learnrate 3e-4 and 1e-3, 3,200 inputs each (batch 64), TrivialAugmentWide, l2 loss
on one-hot targets, AdamW, cosine schedule, one validation on the 10,000 test images at the end.
The two evaluations: validation loss and argmax only, or also the seed's in-sample SVC probe and
the held-out one (an SVC fitted on 10,000 un-augmented training images).

The three ways, each timed from a cold start of what a user would start:
- plain: one Python process training the four runs one after the other (process start,
  imports and data loading included);
- ray: Ray Tune 2.60 with two concurrent trials of one CPU each (ray.init included);
  installed into this interpreter's environment on first use (a benchmark-only dependency);
- sweeps: the embedded stack already up (`sweeps up`, two runs at once), from POST /sweeps
  until the sweep is finished; each run's phases ("where the time went") are printed too.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RAY_VERSION = "2.60.0"
GRID = [(channels, lr) for channels in (8, 16) for lr in (3e-4, 1e-3)]
INPUTS, BATCH, CODE, HELDOUT = 3_200, 64, 128, 10_000
DATA_DIRS = [Path(os.environ.get("SWEEPS_DATA_DIR", ".data/fashion-mnist")),
             Path("/usr/share/datasets/fashion-mnist")]  # fmt: skip
TOKEN = "small-grid-bench-token-0123456789"

SWEEP_YAML = """\
matrix:
  ch: [8, 16]
  lr: [0.0003, 0.001]
experiment_name: bench/small_grid_${matrix_slug}
train_set: |
  ClassLogitsDataset(fmnist_dataset(train=True, shape=(1, 28, 28)),
                     num_classes=10, tuple_position=1, label_to_index=True)
validation_set: |
  ClassLogitsDataset(fmnist_dataset(train=False, shape=(1, 28, 28)),
                     num_classes=10, tuple_position=1, label_to_index=True)
trainer: TRAINER
batch_size: 64
learnrate: ${lr}
optimizer: AdamW
scheduler: CosineAnnealingLR
loss_function: l2
max_inputs: 3200
train_input_transforms: |
  [
      lambda x: (x * 255).to(torch.uint8),
      VT.TrivialAugmentWide(),
      lambda x: x.to(torch.float32) / 255.,
  ]
model: |
  class Encoder(nn.Module):
      def __init__(self):
          super().__init__()
          self.encoder = EncoderConv2d((1, 28, 28), 128, channels=(${ch}, ${ch}, ${ch}))
          self.linear = nn.Linear(128, 10)

      def forward(self, x):
          return self.linear(self.encoder(x))

  Encoder()
"""


# ---- the plain loop (also each Ray trial's body) --------------------------------------------


def load_fmnist() -> dict[str, Any]:
    import numpy as np

    def read(name: str) -> Any:
        folder = next(d for d in DATA_DIRS if (d / name).is_file())
        with gzip.open(folder / name, "rb") as fh:
            data = fh.read()
        offset = 16 if "images" in name else 8
        array = np.frombuffer(data, dtype=np.uint8, offset=offset)
        return array.reshape(-1, 28, 28) if "images" in name else array

    return {
        "train_x": read("train-images-idx3-ubyte.gz"),
        "train_y": read("train-labels-idx1-ubyte.gz"),
        "test_x": read("t10k-images-idx3-ubyte.gz"),
        "test_y": read("t10k-labels-idx1-ubyte.gz"),
    }


def train_one(channels: int, lr: float, probes: bool, data: dict[str, Any]) -> dict[str, float]:
    """One run as a user would write it: no orchestration, SVC fits one after the other."""
    import torch
    import torchvision.transforms as VT
    from sklearn.svm import SVC
    from torch import nn

    from worker.engine.models import EncoderConv2d

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = EncoderConv2d((1, 28, 28), CODE, channels=(channels,) * 3)
            self.linear = nn.Linear(CODE, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(self.encoder(x))

    train_x = torch.from_numpy(data["train_x"]).unsqueeze(1).float() / 255
    train_y = torch.from_numpy(data["train_y"]).long()
    test_x = torch.from_numpy(data["test_x"]).unsqueeze(1).float() / 255
    test_y = torch.from_numpy(data["test_y"]).long()
    model = Encoder()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, INPUTS // BATCH)
    augment = VT.TrivialAugmentWide()
    order = torch.randperm(len(train_x))
    for start in range(0, INPUTS, BATCH):
        idx = order[start : start + BATCH]
        x = augment((train_x[idx] * 255).to(torch.uint8)).float() / 255
        target = nn.functional.one_hot(train_y[idx], 10).float()
        loss = nn.functional.mse_loss(model(x), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()

    @torch.no_grad()
    def evaluate(x: torch.Tensor, y: torch.Tensor) -> tuple[float, float, Any]:
        model.eval()
        losses, correct, codes = [], 0, []
        for start in range(0, len(x), 1000):
            code = model.encoder(x[start : start + 1000])
            out = model.linear(code)
            target = nn.functional.one_hot(y[start : start + 1000], 10).float()
            losses.append(float(nn.functional.mse_loss(out, target)))
            correct += int((out.argmax(1) == y[start : start + 1000]).sum())
            codes.append(code)
        return sum(losses) / len(losses), correct / len(x), torch.cat(codes).numpy()

    result: dict[str, float] = {}
    result["validation_loss"], result["accuracy_argmax"], codes = evaluate(test_x, test_y)
    if probes:
        labels = test_y.numpy()
        result["accuracy_svc"] = float(SVC().fit(codes, labels).score(codes, labels))
        held = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(0))[:HELDOUT]
        _, _, held_codes = evaluate(train_x[held], train_y[held])
        fitted = SVC().fit(held_codes, train_y[held].numpy())
        result["accuracy_svc_heldout"] = float(fitted.score(codes, labels))
    return result


def plain_main(probes: bool) -> None:
    data = load_fmnist()
    for channels, lr in GRID:
        print(json.dumps(train_one(channels, lr, probes, data)), flush=True)


def ray_main(probes: bool) -> None:
    import ray
    from ray import tune

    def trial(config: dict[str, Any]) -> None:
        import torch

        torch.set_num_threads(1)  # one CPU per trial, as Ray reserves it
        tune.report(train_one(config["ch"], config["lr"], probes, load_fmnist()))

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})  # fmt: skip
    tuner = tune.Tuner(
        tune.with_resources(trial, {"cpu": 1}),
        param_space={"ch": tune.grid_search([8, 16]), "lr": tune.grid_search([3e-4, 1e-3])},
        tune_config=tune.TuneConfig(max_concurrent_trials=2),
        run_config=tune.RunConfig(
            storage_path=tempfile.mkdtemp(prefix="ray-small-grid-"), verbose=0
        ),  # fmt: skip
    )
    results = tuner.fit()
    assert not results.errors, results.errors
    ray.shutdown()


# ---- the driver --------------------------------------------------------------------------


def timed_subprocess(args: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.perf_counter()
    subprocess.run([sys.executable, __file__, *args], check=True, env=env, cwd=REPO)
    return time.perf_counter() - started


def ensure_ray() -> None:
    if importlib.util.find_spec("ray") is None:
        print(f"installing ray[tune]=={RAY_VERSION} (benchmark only) ...", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                        f"ray[tune]=={RAY_VERSION}"], check=True)  # fmt: skip


class Stack:
    """`sweeps up` in a scratch folder (its own SQLite and Redis), two runs at once."""

    def __init__(self, port: int) -> None:
        import httpx

        self.folder = Path(tempfile.mkdtemp(prefix="sweeps-small-grid-"))
        env = {**os.environ, "PYTHONPATH": str(REPO), "SWEEPS_API_TOKEN": TOKEN,
               "SWEEPS_RUNS_PER_GPU": "2", "SWEEPS_METRICS_FLUSH_SECONDS": "1"}  # fmt: skip
        self.log = open(self.folder / "up.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cli", "up", "--port", str(port)],
            cwd=self.folder, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                                   headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
        deadline = time.monotonic() + 180
        while True:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"the stack did not come up; see {self.folder / 'up.log'}")
            try:
                if self.client.get("/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        # Until the worker is consuming, a first sweep would also time the worker's start.
        log = self.folder / ".sweeps" / "logs" / "worker.log"
        while " ready." not in (log.read_text(errors="replace") if log.exists() else ""):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start; see {log}")
            time.sleep(0.2)

    def run_grid(self, probes: bool) -> tuple[float, list[dict[str, Any]]]:
        text = SWEEP_YAML.replace("TRAINER", "RepresentationClassTrainer" if probes else "Trainer")
        started = time.perf_counter()
        response = self.client.post("/sweeps", content=text, params={"force": "true"},
                                    headers={"Content-Type": "text/plain"})  # fmt: skip
        response.raise_for_status()
        sweep_id = response.json()["id"]
        while self.client.get(f"/sweeps/{sweep_id}").json()["status"] != "finished":
            time.sleep(0.1)
        wall = time.perf_counter() - started
        runs = self.client.get(f"/sweeps/{sweep_id}").json()["runs"]
        details = [self.client.get(f"/runs/{run['id']}").json() for run in runs]
        bad = [d["id"] for d in details if d["status"] != "succeeded"]
        if bad:
            raise RuntimeError(f"runs {bad} did not succeed; see {self.folder}")
        return wall, details

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(60)
        self.log.close()


# Everything but training, validation and probes is the run's fixed cost.
WORK_PHASES = ("train", "validation", "embed_heldout", "svc_wait")


def print_phases(label: str, details: list[dict[str, Any]]) -> None:
    names: list[str] = []
    for d in details:
        names += [n for n in d["phases"] if n not in names]
    print(f"  {label}: phases per run (seconds)")
    for name in names:
        values = " ".join(f"{d['phases'].get(name, 0):7.2f}" for d in details)
        print(f"    {name:16s} {values}")
    fixed = [d["phases"]["total"] - sum(d["phases"].get(n, 0) for n in WORK_PHASES)
             for d in details]  # fmt: skip
    print(f"    {'fixed cost':16s} " + " ".join(f"{f:7.2f}" for f in fixed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ways", default="plain,ray,sweeps")
    parser.add_argument("--evals", default="none,svc", help="none (no probes), svc (probes)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--child", choices=["plain", "ray"], help=argparse.SUPPRESS)
    parser.add_argument("--probes", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "plain":
        return plain_main(args.probes)
    if args.child == "ray":
        return ray_main(args.probes)

    ways, evals = args.ways.split(","), args.evals.split(",")
    # SIGTERM unwinds like Ctrl-C, so the stack below is stopped, not orphaned.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if "ray" in ways:
        ensure_ray()
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.2f} at the start", flush=True)  # fmt: skip
    walls: dict[tuple[str, str], float] = {}
    stack = Stack(args.port) if "sweeps" in ways else None
    try:
        for evaluation in evals:
            probes = ["--probes"] if evaluation == "svc" else []
            if "plain" in ways:
                walls["plain", evaluation] = timed_subprocess(["--child", "plain", *probes])
            if "ray" in ways:
                walls["ray", evaluation] = timed_subprocess(["--child", "ray", *probes])
            if stack is not None:
                walls["sweeps", evaluation], details = stack.run_grid(bool(probes))
                print_phases(f"sweeps, {evaluation}", details)
            for way in ways:
                print(f"  {way:7s} {evaluation:5s} {walls[way, evaluation]:7.1f} s", flush=True)
    finally:
        if stack is not None:
            stack.stop()
    print(f"load {os.getloadavg()[0]:.2f} at the end")
    print("| evaluation | " + " | ".join(ways) + " | sweeps / plain | sweeps / ray |")
    for evaluation in evals:
        cells = [f"{walls[w, evaluation]:.1f} s" for w in ways]
        ratios = [f"{walls['sweeps', evaluation] / walls[w, evaluation]:.2f}x"
                  if "sweeps" in ways and w in ways else "" for w in ("plain", "ray")]  # fmt: skip
        print(f"| {evaluation} | " + " | ".join(cells + ratios) + " |")


if __name__ == "__main__":
    main()
