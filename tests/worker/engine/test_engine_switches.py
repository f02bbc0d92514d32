"""The per-file switches `precision: bf16` and `compile: true` (both off by default)."""

from __future__ import annotations

import math

import pytest
import torch

from shared.sweepfile.run_config import RunConfig
from tests.worker.engine.support import Recorder, run_compiled_seed_step, tiny_config
from worker.engine import train_run

RECORDING_MODEL = """
class Recording(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(64, CODE))
        self.linear = nn.Linear(CODE, CLASSES)

    def forward(self, x):
        out = self.linear(self.encoder(x))
        if not torch.compiler.is_compiling():
            SEEN.append((torch.is_grad_enabled(), out.dtype, len(x)))
        return out

Recording()
"""


def _config(seen: list, **overrides) -> dict:
    globals_ = {**tiny_config()["globals"], "SEEN": seen}
    return tiny_config(globals=globals_, model=RECORDING_MODEL, **overrides)


def test_bf16_autocasts_training_and_validation_and_keeps_fp32_weights() -> None:
    seen: list = []
    recorder = Recorder()
    summary = train_run(
        RunConfig.from_config(_config(seen, precision="bf16", max_inputs=300)),
        report=recorder,
        device="cpu",
    )
    assert {dtype for _, dtype, _ in seen} == {torch.bfloat16}
    assert math.isfinite(summary["validation_loss"]) and "accuracy_svc_heldout" in summary
    fp32: list = []
    train_run(RunConfig.from_config(_config(fp32, max_inputs=300)), report=Recorder(), device="cpu")
    assert {dtype for _, dtype, _ in fp32} == {torch.float32}


@pytest.mark.slow
def test_compile_trains_and_a_partial_last_batch_does_not_recompile() -> None:
    """80 images at batch 32 (32, 32, 16) for 4 epochs: the 16-image batch runs eagerly."""
    torch._dynamo.reset()
    seen: list = []
    globals_ = {**tiny_config()["globals"], "SEEN": seen, "N_TRAIN": 80}
    config = tiny_config(
        globals=globals_, model=RECORDING_MODEL, compile=True, max_inputs=None, max_epoch=4,
        scheduler=None,
    )  # fmt: skip
    from torch._dynamo.utils import counters

    counters.clear()
    reference: list = []
    ref_config = {**config, "compile": False, "globals": {**globals_, "SEEN": reference}}
    expected = train_run(RunConfig.from_config(ref_config), report=Recorder(), device="cpu")
    summary = train_run(RunConfig.from_config(config), report=Recorder(), device="cpu")
    assert summary["inputs"] == expected["inputs"] == 320
    # One compiled graph for the full batches, however many epochs and partial batches.
    assert counters["stats"]["unique_graphs"] == 1
    # Only the partial batches (and validation) ran the model eagerly while training.
    eager_training = [n for grad, _, n in seen if grad]
    assert eager_training == [16] * 4
    assert summary["validation_loss"] == pytest.approx(expected["validation_loss"], rel=1e-3)


@pytest.mark.slow
def test_compile_captures_the_seeds_transforms_and_model_in_one_graph() -> None:
    """The seed's transform list (torchvision's augment between two lambdas) compiles with the
    model into one graph, with no graph break, and the run still learns."""
    summary, losses, counters = run_compiled_seed_step("cpu")
    assert summary["inputs"] == 576
    assert counters["stats"]["unique_graphs"] == 1
    assert not counters["graph_break"]
    assert len(losses) == 6 and losses[-1] < losses[0]
