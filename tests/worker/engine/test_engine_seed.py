"""The seed's own file, unchanged except max_inputs: 60000, trains on CPU through the engine."""

from __future__ import annotations

import time

import pytest
import torch

from shared.sweepfile import parse_sweep
from shared.sweepfile.run_config import RunConfig
from tests.worker.engine.support import Recorder
from worker.engine import train_run


@pytest.mark.long
@pytest.mark.timeout(1800)
def test_seed_file_one_epoch_reaches_75_percent(seed_yaml: str) -> None:
    # One thread: on the shared 2-core machine two OpenMP threads ran the ViT's matmuls 3x
    # slower than one (25 vs 80 GFLOPS) whenever the other core was busy.
    torch.set_num_threads(1)
    assert "max_inputs: 2_000_000" in seed_yaml
    (run,) = parse_sweep(seed_yaml.replace("max_inputs: 2_000_000", "max_inputs: 60000")).runs
    recorder = Recorder()
    started = time.perf_counter()
    summary = train_run(RunConfig.from_config(run.config), report=recorder, device="cpu")
    seconds = time.perf_counter() - started
    print(f"seed file, 60,000 inputs on CPU: {seconds:.0f} s, {summary}")
    assert summary["inputs"] == 60_000  # 937.5 batches of 64: the last batch has 32 images
    assert summary["model_params"] == 4_469_178
    assert summary["accuracy_argmax"] >= 0.75
    series = recorder.series()
    assert list(series["validation_loss"]) == [60_000]
    assert 0.5 <= series["accuracy_svc"][60_000] <= 1.0
    assert 0.5 <= series["accuracy_svc_heldout"][60_000] <= 1.0
