"""Dataset helpers the experiment files call by name."""

import torch
from torch.utils.data import TensorDataset

__all__ = ["blob_images", "limit"]


def blob_images(count: int, shape=(1, 8, 8), seed: int = 0) -> TensorDataset:
    """Smooth random images in [0, 1] (a blurred noise field), as a one-tensor dataset."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(count, *shape, generator=generator)
    kernel = torch.ones(shape[0], 1, 3, 3) / 9.0
    smooth = torch.nn.functional.conv2d(noise, kernel, padding=1, groups=shape[0])
    return TensorDataset(smooth.clamp(0, 1))


def limit(dataset, count: int):
    return torch.utils.data.Subset(dataset, range(min(count, len(dataset))))
