"""TrivialAugmentWide on the device: torchvision's operation space, drawn per image or per call."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms as VT
from torchvision.transforms import InterpolationMode
from torchvision.transforms.autoaugment import _apply_op

from shared.sweepfile.run_config import RunConfig
from tests.worker.engine.support import Recorder, tiny_config
from worker.engine import TrivialAugmentWideOnDevice, TrivialAugmentWidePerSample, train_run
from worker.engine.augment import OPS, apply_ops, augmentation_space, device_twin
from worker.engine.build import build_run


def _images(n: int = 8) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.avg_pool2d(torch.rand(n, 3, 32, 32, generator=g), 5, 1)
    return (smooth * 255).to(torch.uint8)


def test_operation_space_is_torchvisions() -> None:
    reference = VT.TrivialAugmentWide()._augmentation_space(31)
    magnitudes, signed = augmentation_space(31)
    assert list(reference) == list(OPS)
    for i, (name, (values, is_signed)) in enumerate(reference.items()):
        assert bool(signed[i]) == is_signed, name
        if values.ndim:
            assert torch.allclose(magnitudes[i], values.float()), name


CASES = [("Identity", 0.0), ("ShearX", 0.5), ("ShearX", -0.7), ("ShearY", 0.3),
         ("TranslateX", 5.0), ("TranslateX", -12.8), ("TranslateY", 9.0), ("Rotate", 30.0),
         ("Rotate", -94.5), ("Brightness", 0.5), ("Brightness", -0.7), ("Color", 0.6),
         ("Color", -0.9), ("Contrast", 0.4), ("Contrast", -0.5), ("Sharpness", 0.8),
         ("Sharpness", -0.6), ("Posterize", 4), ("Posterize", 2), ("Solarize", 128.0),
         ("Solarize", 0.0), ("AutoContrast", 0.0), ("Equalize", 0.0)]  # fmt: skip


@pytest.mark.parametrize(("name", "magnitude"), CASES)
def test_each_operation_matches_torchvision(name: str, magnitude: float) -> None:
    x = _images()
    expected = torch.stack(
        [_apply_op(im, name, magnitude, InterpolationMode.NEAREST, None) for im in x]
    )
    op = torch.full((len(x),), OPS.index(name))
    out = apply_ops(x.float(), op, torch.full((len(x),), float(magnitude)), 255.0)
    out = out.floor().clamp(0, 255).to(torch.uint8)
    # torchvision rounds its grayscale mean to uint8 before blending (Contrast): off by <= 1.
    assert (out.int() - expected.int()).abs().max() <= 1


def test_one_operation_per_image() -> None:
    torch.manual_seed(0)
    augment = TrivialAugmentWidePerSample()
    batch = _images(1).expand(256, -1, -1, -1).contiguous()  # 256 copies of one image
    out = augment(batch)
    ops = augment.last_ops
    assert ops.shape == (256,) and len(ops.unique()) == len(OPS)
    distinct = {tuple(im.flatten().tolist()) for im in out}
    assert len(distinct) > 50  # images got different operations and magnitudes
    identity = ops == OPS.index("Identity")
    assert torch.equal(out[identity], batch[identity])


def test_dtypes_and_leading_dims() -> None:
    augment = TrivialAugmentWidePerSample()
    x = _images(6)
    assert augment(x).dtype == torch.uint8
    floats = x.float().div(255).view(2, 3, 3, 28, 28)
    out = augment(floats)
    assert out.shape == floats.shape and out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    gray = x[:, :1]
    assert augment(gray).shape == gray.shape


def test_usable_from_a_run_file() -> None:
    transforms = (
        "[\n    lambda x: (x * 255).to(torch.uint8),\n    TrivialAugmentWidePerSample(),\n"
        "    lambda x: x.float() / 255,\n]"
    )
    recorder = Recorder()
    summary = train_run(RunConfig.from_config(
        tiny_config(max_inputs=300, train_input_transforms=transforms)), report=recorder,
        device="cpu",
    )  # fmt: skip
    assert summary["inputs"] == 320 and "accuracy_svc" in summary


def test_on_device_twin_draws_one_operation_per_call_like_torchvision() -> None:
    torch.manual_seed(0)
    augment = TrivialAugmentWideOnDevice()
    batch = _images(1).expand(64, -1, -1, -1).contiguous()
    drawn = set()
    for _ in range(100):
        out = augment(batch)
        assert len(augment.last_ops.unique()) == 1  # the whole batch shares one operation
        assert torch.equal(out, out[:1].expand_as(out))  # ...and one magnitude
        drawn.add(int(augment.last_ops[0]))
    assert drawn == set(range(len(OPS)))


def test_device_twin_replaces_only_torchvisions_default_augment() -> None:
    twin = device_twin(VT.TrivialAugmentWide(num_magnitude_bins=11))
    assert type(twin) is TrivialAugmentWideOnDevice and twin.num_magnitude_bins == 11
    kept = [
        VT.TrivialAugmentWide(interpolation=InterpolationMode.BILINEAR),
        VT.TrivialAugmentWide(fill=[0]),
        VT.RandAugment(),
        TrivialAugmentWidePerSample(),
    ]
    for transform in kept:
        assert device_twin(transform) is transform


@pytest.mark.parametrize("compile_", [False, True])
def test_only_compile_swaps_the_runs_augment(compile_: bool) -> None:
    transforms = "[\n    lambda x: (x * 255).to(torch.uint8),\n    VT.TrivialAugmentWide(),\n]"
    config = tiny_config(train_input_transforms=transforms, compile=compile_)
    run = build_run(RunConfig.from_config(config), torch.device("cpu"))
    expected = TrivialAugmentWideOnDevice if compile_ else VT.TrivialAugmentWide
    assert type(run.transforms[1]) is expected


@pytest.mark.slow
@pytest.mark.parametrize("cls", [TrivialAugmentWideOnDevice, TrivialAugmentWidePerSample])
def test_compiled_augment_draws_anew_on_every_call(cls: type) -> None:
    """A compiled graph must not bake one random draw in: each call augments afresh."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    augment = torch.compile(cls(), dynamic=False)
    batch = _images(1).expand(16, -1, -1, -1).contiguous()
    outputs = {tuple(augment(batch)[0].flatten().tolist()) for _ in range(30)}
    assert len(outputs) > 5
