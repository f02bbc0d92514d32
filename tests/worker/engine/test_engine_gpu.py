"""The engine on CUDA (bench/gpu.sh runs these on the GPU machine; without CUDA they skip)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from shared.sweepfile.run_config import RunConfig
from tests.worker.engine.support import Recorder, run_compiled_seed_step, tiny_config
from worker.engine import TrivialAugmentWideOnDevice, TrivialAugmentWidePerSample, train_run

PER_SAMPLE = "[\n    TrivialAugmentWidePerSample(),\n]"
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (bench/gpu.sh)"),
]


def test_cuda_run_reports_every_metric_and_provenance() -> None:
    recorder = Recorder()
    summary = train_run(
        RunConfig.from_config(tiny_config(max_inputs=1100)), report=recorder, device="cuda"
    )
    assert summary["inputs"] == 1120
    assert {"accuracy_svc", "accuracy_svc_heldout", "train_loss"} <= set(summary)
    info = recorder.of("provenance")[0]["info"]
    assert info["device"].startswith("cuda") and info["cuda"] and "NVIDIA" in info["device_name"]


def test_cuda_tensor_data_stays_on_the_device() -> None:
    devices: list = []
    transforms = "[\n    lambda x: (DEVICES.append(x.device.type), x)[1],\n]"
    globals_ = {**tiny_config()["globals"], "DEVICES": devices}
    train_run(
        RunConfig.from_config(
            tiny_config(globals=globals_, train_input_transforms=transforms, max_inputs=300)
        ),
        report=Recorder(),
        device="cuda",
    )
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
    eager = train_run(RunConfig.from_config(base), report=Recorder(), device="cuda")
    fast = train_run(
        RunConfig.from_config({**base, "compile": True, "precision": "bf16"}),
        report=Recorder(),
        device="cuda",
    )
    assert fast["inputs"] == eager["inputs"] == 320
    assert fast["validation_loss"] == pytest.approx(eager["validation_loss"], rel=0.05)


def test_cuda_crash_and_resume(tmp_path: Path) -> None:
    config = tiny_config(max_inputs=2000, num_inputs_between_validations=300)
    crashed = Recorder(fail_at=("validation_loss", 1536))
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_run(
            RunConfig.from_config(config), report=crashed, checkpoint_dir=tmp_path, device="cuda"
        )
    resumed = Recorder()
    summary = train_run(
        RunConfig.from_config(config), report=resumed, checkpoint_dir=tmp_path, device="cuda"
    )
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


def test_cuda_step_graph_run_matches_the_eager_run() -> None:
    """The captured step and the plain step from one seed: the same curve within bf16 tolerance
    (the augment's draws come from the captured RNG offsets, so not bit for bit)."""
    globals_ = {**tiny_config()["globals"], "N_TRAIN": 80}  # a partial batch every epoch
    base = tiny_config(globals=globals_, max_inputs=1600, scheduler="CosineAnnealingLR",
                       num_inputs_between_validations=400, precision="bf16",
                       train_input_transforms=PER_SAMPLE)  # fmt: skip
    eager, graph = Recorder(), Recorder()
    train_run(RunConfig.from_config(base), report=eager, device="cuda")
    summary = train_run(
        RunConfig.from_config({**base, "step_graph": True}), report=graph, device="cuda"
    )
    assert summary["inputs"] == 1600
    a, b = eager.series(), graph.series()
    assert a["learnrate"] == pytest.approx(b["learnrate"], rel=1e-6)
    assert a["validation_loss"].keys() == b["validation_loss"].keys()
    for step, value in a["validation_loss"].items():
        assert b["validation_loss"][step] == pytest.approx(value, rel=0.05), step
    assert list(b["train_loss"].values())[-1] < list(b["train_loss"].values())[0]


def test_cuda_step_graph_replays_without_reading_the_device() -> None:
    """Between validations the host only copies indices and writes the learning rate."""
    from worker.engine.batches import TrainBatches
    from worker.engine.build import build_run
    from worker.engine.step import GraphStep, make_forward_loss

    config = tiny_config(step_graph=True, scheduler="CosineAnnealingLR", max_inputs=6400,
                         train_input_transforms=PER_SAMPLE)  # fmt: skip
    run = build_run(RunConfig.from_config(config), torch.device("cuda"))
    batches = TrainBatches(run.train_set, 32, torch.device("cuda"), 0)
    forward_loss = make_forward_loss(run, lambda: torch.autocast("cuda", enabled=False))
    step = GraphStep(run, forward_loss, batches.tensors)
    order = batches.new_order()
    step(order[:32])  # the capture (warm-up steps read nothing back either, but allocate)
    first = [p.detach().clone() for p in run.model.parameters()]
    torch.cuda.set_sync_debug_mode("error")
    try:
        for i in range(1, 8):
            step(order[i * 32 : (i + 1) * 32])
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert step.graph is not None
    assert any(not torch.equal(p, q) for p, q in zip(first, run.model.parameters(), strict=True))
    assert float(step.loss_sum) > 0
    assert step.lr() < 0.003 and float(step.lr_tensor) == pytest.approx(step.lr())
