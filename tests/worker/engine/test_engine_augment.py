"""Per-sample TrivialAugmentWide: torchvision's operation space, one draw per image."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms as VT
from torchvision.transforms import InterpolationMode
from torchvision.transforms.autoaugment import _apply_op

from tests.worker.engine.support import Recorder, tiny_config
from worker.engine import TrivialAugmentWidePerSample, train_run
from worker.engine.augment import OPS, apply_ops, augmentation_space


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
    summary = train_run(
        tiny_config(max_inputs=300, train_input_transforms=transforms), report=recorder,
        device="cpu",
    )  # fmt: skip
    assert summary["inputs"] == 320 and "accuracy_svc" in summary
