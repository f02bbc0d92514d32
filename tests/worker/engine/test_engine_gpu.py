"""The engine on CUDA (bench/gpu.sh runs these on the GPU machine; without CUDA they skip)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.worker.engine.support import Recorder, run_compiled_seed_step, tiny_config
from worker.engine import TrivialAugmentWideOnDevice, TrivialAugmentWidePerSample, train_run

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (bench/gpu.sh)"),
]


def test_cuda_run_reports_every_metric_and_provenance() -> None:
    recorder = Recorder()
    summary = train_run(tiny_config(max_inputs=1100), report=recorder, device="cuda")
    assert summary["inputs"] == 1120
    assert {"accuracy_svc", "accuracy_svc_heldout", "train_loss"} <= set(summary)
    info = recorder.of("provenance")[0]["info"]
    assert info["device"].startswith("cuda") and info["cuda"] and "NVIDIA" in info["device_name"]


def test_cuda_tensor_data_stays_on_the_device() -> None:
    devices: list = []
    transforms = "[\n    lambda x: (DEVICES.append(x.device.type), x)[1],\n]"
    globals_ = {**tiny_config()["globals"], "DEVICES": devices}
    train_run(tiny_config(globals=globals_, train_input_transforms=transforms, max_inputs=300),
              report=Recorder(), device="cuda")  # fmt: skip
    assert devices and set(devices) == {"cuda"}


def test_per_sample_augment_on_cuda_makes_no_host_sync() -> None:
    augment = TrivialAugmentWidePerSample().cuda()
    x = (torch.rand(512, 3, 28, 28, device="cuda") * 255).to(torch.uint8)
    augment(x)  # warm up (first-use allocations)
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = augment(x)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out.device.type == "cuda" and out.dtype == torch.uint8
    assert len(augment.last_ops.unique()) == 14


def test_cuda_bf16_and_compile_match_the_eager_run() -> None:
    torch._dynamo.reset()
    # 80 images at batch 32 (32, 32, 16): the partial batch runs eagerly, no recompiles.
    globals_ = {**tiny_config()["globals"], "N_TRAIN": 80}
    base = tiny_config(globals=globals_, max_inputs=None, max_epoch=4)
    eager = train_run(base, report=Recorder(), device="cuda")
    fast = train_run({**base, "compile": True, "precision": "bf16"}, report=Recorder(),
                     device="cuda")  # fmt: skip
    assert fast["inputs"] == eager["inputs"] == 320
    assert fast["validation_loss"] == pytest.approx(eager["validation_loss"], rel=0.05)


def test_cuda_crash_and_resume(tmp_path: Path) -> None:
    config = tiny_config(max_inputs=2000, num_inputs_between_validations=300)
    crashed = Recorder(fail_at=("validation_loss", 1536))
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_run(config, report=crashed, checkpoint_dir=tmp_path, device="cuda")
    resumed = Recorder()
    summary = train_run(config, report=resumed, checkpoint_dir=tmp_path, device="cuda")
    assert summary["inputs"] == 2016
    assert min(resumed.steps("validation_loss")) == 1536


def test_cuda_graph_augment_draws_anew_on_every_replay() -> None:
    """Inside a captured CUDA graph the random draw must advance on each replay."""
    torch._dynamo.reset()
    augment = torch.compile(TrivialAugmentWideOnDevice().cuda(), dynamic=False,
                            mode="reduce-overhead")  # fmt: skip
    batch = (torch.rand(1, 3, 28, 28, device="cuda") * 255).to(torch.uint8).expand(16, -1, -1, -1)
    batch = batch.contiguous()
    outputs = set()
    for _ in range(30):
        torch.compiler.cudagraph_mark_step_begin()
        outputs.add(tuple(augment(batch)[0].flatten().tolist()))
    assert len(outputs) > 5


def test_cuda_compile_captures_the_seeds_step_in_cuda_graphs() -> None:
    """The seed's transforms, model and loss: one graph, no break, and no CUDA-graph skip."""
    summary, losses, counters = run_compiled_seed_step("cuda", precision="bf16")
    assert summary["inputs"] == 576
    assert counters["stats"]["unique_graphs"] == 1 and not counters["graph_break"]
    assert not counters["inductor"]["cudagraph_skips"]
    assert losses[-1] < losses[0]
