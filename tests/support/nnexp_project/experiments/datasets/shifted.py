import torch
from torch.utils.data import TensorDataset


def shifted_pairs(count: int, size: int = 8, seed: int = 0) -> TensorDataset:
    """(image, the image shifted one pixel right): a tiny image-to-image task."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(count, 1, size, size, generator=generator)
    return TensorDataset(images, torch.roll(images, 1, dims=-1))
