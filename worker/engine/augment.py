"""TrivialAugmentWide on the batch's device, without host syncs, per image or per batch.

torchvision's TrivialAugmentWide draws one operation for a whole batch tensor, on the host (a
sync per call on CUDA, and a graph break for torch.compile). These draw on the device from the
same space (the same 14 operations, 31 magnitude bins, random sign for the signed ones): every
operation is computed for the batch and each image keeps the one drawn for it. Nothing depends
on the draw on the host, so a call can be compiled and captured in a CUDA graph.

- `TrivialAugmentWideOnDevice()`: one draw per call, torchvision's semantics; `compile: true`
  swaps torchvision's transform for it (`device_twin`).
- `TrivialAugmentWidePerSample()`: one draw per image.

Both work on uint8 [0, 255] or float [0, 1] tensors shaped [..., C, H, W] with C in (1, 3).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
import torchvision.transforms as VT
from torch import nn

OPS = (
    "Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color",
    "Contrast", "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize",
)  # fmt: skip
_INDEX = {name: i for i, name in enumerate(OPS)}
_GEOMETRIC = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")


def augmentation_space(num_bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(magnitudes [ops, bins], signed [ops]) exactly as torchvision's TrivialAugmentWide."""
    zero = torch.zeros(num_bins)
    wide = torch.linspace(0.0, 0.99, num_bins)
    table = {
        "Identity": (zero, False),
        "ShearX": (wide, True),
        "ShearY": (wide, True),
        "TranslateX": (torch.linspace(0.0, 32.0, num_bins), True),
        "TranslateY": (torch.linspace(0.0, 32.0, num_bins), True),
        "Rotate": (torch.linspace(0.0, 135.0, num_bins), True),
        "Brightness": (wide, True),
        "Color": (wide, True),
        "Contrast": (wide, True),
        "Sharpness": (wide, True),
        "Posterize": ((8 - (torch.arange(num_bins) / ((num_bins - 1) / 6)).round().int()), False),
        "Solarize": (torch.linspace(255.0, 0.0, num_bins), False),
        "AutoContrast": (zero, False),
        "Equalize": (zero, False),
    }
    magnitudes = torch.stack([table[name][0].float() for name in OPS])
    signed = torch.tensor([table[name][1] for name in OPS])
    return magnitudes, signed


class TrivialAugmentWideOnDevice(nn.Module):
    per_image = False

    def __init__(self, num_magnitude_bins: int = 31) -> None:
        super().__init__()
        magnitudes, signed = augmentation_space(num_magnitude_bins)
        self.register_buffer("magnitudes", magnitudes, persistent=False)
        self.register_buffer("signed", signed, persistent=False)
        self.num_magnitude_bins = num_magnitude_bins
        self.last_ops: torch.Tensor | None = None  # the ops drawn by the last call (for tests)

    def draw(self, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Per image: op index [n] and signed magnitude [n] (all equal unless per_image)."""
        magnitudes = self.magnitudes.to(device)
        draws = n if self.per_image else 1
        op = torch.randint(len(OPS), (draws,), device=device)
        bins = torch.randint(self.num_magnitude_bins, (draws,), device=device)
        flip = torch.randint(2, (draws,), device=device).bool() & self.signed.to(device)[op]
        magnitude = magnitudes[op, bins]
        magnitude = torch.where(flip, -magnitude, magnitude)
        return op.expand(n), magnitude.expand(n)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        *lead, c, h, w = img.shape
        x = img.reshape(-1, c, h, w)
        is_uint8 = img.dtype == torch.uint8
        bound = 255.0 if is_uint8 else 1.0
        xf = x.float()
        op, magnitude = self.draw(x.shape[0], x.device)
        if not torch.compiler.is_compiling():
            self.last_ops = op
        out = apply_ops(xf, op, magnitude, bound)
        if is_uint8:
            return out.floor().clamp_(0, 255).to(torch.uint8).reshape(img.shape)
        return out.clamp_(0, bound).to(img.dtype).reshape(img.shape)


class TrivialAugmentWidePerSample(TrivialAugmentWideOnDevice):
    per_image = True


def device_twin(transform: Any) -> Any:
    """torchvision's TrivialAugmentWide as TrivialAugmentWideOnDevice where they agree (nearest
    interpolation, no fill); any other transform as it is."""
    if (
        type(transform) is VT.TrivialAugmentWide
        and transform.interpolation == VT.InterpolationMode.NEAREST
        and transform.fill is None
    ):
        return TrivialAugmentWideOnDevice(transform.num_magnitude_bins)
    return transform


def apply_ops(x: torch.Tensor, op: torch.Tensor, m: torch.Tensor, bound: float) -> torch.Tensor:
    """x float [B, C, H, W] in [0, bound]; op [B] indices into OPS; m [B] signed magnitudes."""
    per = m.view(-1, 1, 1, 1)
    results = {
        "Brightness": _blend(x, torch.zeros_like(x), 1.0 + per, bound),
        "Color": _blend(x, _grayscale(x), 1.0 + per, bound) if x.shape[1] == 3 else x,
        "Contrast": _blend(x, _grayscale(x).mean(dim=(-3, -2, -1), keepdim=True), 1.0 + per, bound),
        "Sharpness": _blend(x, _blurred(x, bound), 1.0 + per, bound),
        "Posterize": _posterize(x, per, bound),
        "Solarize": torch.where(x >= per * (bound / 255.0), bound - x, x),
        "AutoContrast": _autocontrast(x, bound),
        "Equalize": _equalize(x, bound),
    }
    out = _geometric(x, op, m)
    for name, result in results.items():
        out = torch.where((op == _INDEX[name]).view(-1, 1, 1, 1), result, out)
    return out


def _blend(a: torch.Tensor, b: torch.Tensor, ratio: torch.Tensor, bound: float) -> torch.Tensor:
    return (ratio * a + (1.0 - ratio) * b).clamp(0, bound)


def _grayscale(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(dim=1)
    return (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(1).expand_as(x)


def _blurred(x: torch.Tensor, bound: float) -> torch.Tensor:
    c = x.shape[1]
    # ones with 5 at the centre, built on the device: item assignment would copy a host scalar,
    # a synchronising copy on CUDA (caught by the GPU test's sync debug mode).
    kernel = 1.0 + F.pad(torch.full((1, 1), 4.0, device=x.device), (1, 1, 1, 1))
    kernel = (kernel / kernel.sum()).expand(c, 1, 3, 3)
    inner = F.conv2d(x, kernel, groups=c)
    if bound == 255.0:
        inner = inner.round()
    out = x.clone()
    out[..., 1:-1, 1:-1] = inner
    return out


def _posterize(x: torch.Tensor, bits: torch.Tensor, bound: float) -> torch.Tensor:
    levels = torch.floor(x * (255.0 / bound))
    step = torch.exp2(8.0 - bits)
    return torch.floor(levels / step) * step * (bound / 255.0)


def _autocontrast(x: torch.Tensor, bound: float) -> torch.Tensor:
    low = x.amin(dim=(-2, -1), keepdim=True)
    high = x.amax(dim=(-2, -1), keepdim=True)
    flat = high == low
    scale = torch.where(flat, torch.ones_like(high), bound / (high - low).clamp_min(1e-12))
    low = torch.where(flat, torch.zeros_like(low), low)
    return ((x - low) * scale).clamp(0, bound)


def _equalize(x: torch.Tensor, bound: float) -> torch.Tensor:
    """Histogram equalisation per image and channel, torchvision's lookup-table rule, batched."""
    b, c, h, w = x.shape
    values = torch.floor(x * (255.0 / bound)).clamp(0, 255).long().view(b * c, h * w)
    hist = torch.zeros(b * c, 256, device=x.device).scatter_add_(
        1, values, torch.ones_like(values, dtype=torch.float32)
    )
    bins = torch.arange(256, device=x.device).expand_as(hist)
    last = torch.where(hist > 0, bins, torch.zeros_like(bins)).amax(dim=1, keepdim=True)
    step = torch.floor((hist.sum(dim=1, keepdim=True) - hist.gather(1, last)) / 255.0)
    safe = step.clamp_min(1.0)
    lut = torch.floor((hist.cumsum(dim=1) + torch.floor(safe / 2)) / safe)
    lut = torch.cat([torch.zeros_like(lut[:, :1]), lut[:, :-1]], dim=1).clamp(0, 255)
    mapped = lut.gather(1, values)
    mapped = torch.where(step == 0, values.float(), mapped)
    return (mapped * (bound / 255.0)).view(b, c, h, w)


def _geometric(x: torch.Tensor, op: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Shear/translate/rotate per image with torchvision's inverse-affine convention (nearest)."""
    b, _, h, w = x.shape
    zero = torch.zeros_like(m)

    def pick(name: str, value: torch.Tensor) -> torch.Tensor:
        return torch.where(op == _INDEX[name], value, zero)

    shear_x = torch.atan(pick("ShearX", m))  # shear angle whose tangent is the magnitude
    shear_y = torch.atan(pick("ShearY", m))
    rot = torch.deg2rad(-pick("Rotate", m))  # F.rotate(img, a) is an affine with angle -a
    tx = torch.trunc(pick("TranslateX", m))
    ty = torch.trunc(pick("TranslateY", m))
    # Shears pivot on the top-left corner (center=[0, 0]); the others on the image centre.
    sheared = (op == _INDEX["ShearX"]) | (op == _INDEX["ShearY"])
    cx = torch.where(sheared, torch.full_like(m, -w * 0.5), zero)
    cy = torch.where(sheared, torch.full_like(m, -h * 0.5), zero)

    a = torch.cos(rot - shear_y) / torch.cos(shear_y)
    bb = -torch.cos(rot - shear_y) * torch.tan(shear_x) / torch.cos(shear_y) - torch.sin(rot)
    c = torch.sin(rot - shear_y) / torch.cos(shear_y)
    d = -torch.sin(rot - shear_y) * torch.tan(shear_x) / torch.cos(shear_y) + torch.cos(rot)
    m0, m1, m3, m4 = d, -bb, -c, a
    m2 = m0 * (-cx - tx) + m1 * (-cy - ty) + cx
    m5 = m3 * (-cx - tx) + m4 * (-cy - ty) + cy
    theta = torch.stack([torch.stack([m0, m1, m2], -1), torch.stack([m3, m4, m5], -1)], 1)

    xs = torch.linspace(-w * 0.5 + 0.5, w * 0.5 - 0.5, w, device=x.device)
    ys = torch.linspace(-h * 0.5 + 0.5, h * 0.5 - 0.5, h, device=x.device)
    base = torch.stack(
        [xs.view(1, w).expand(h, w), ys.view(h, 1).expand(h, w), torch.ones(h, w, device=x.device)],
        dim=-1,
    ).view(1, h * w, 3)
    # linspace with two steps is [w/2, h/2] made on the device (torch.tensor would copy from host)
    scale = torch.linspace(0.5 * w, 0.5 * h, 2, device=x.device)
    grid = base.expand(b, -1, -1).bmm(theta.transpose(1, 2)) / scale
    moved = F.grid_sample(
        x, grid.view(b, h, w, 2), mode="nearest", padding_mode="zeros", align_corners=False
    )
    geometric = torch.zeros_like(op, dtype=torch.bool)
    for name in _GEOMETRIC:
        geometric |= op == _INDEX[name]
    return torch.where(geometric.view(-1, 1, 1, 1), moved, x)
