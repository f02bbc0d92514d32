"""Training batches: device-resident tensors batched by index, or a DataLoader."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader

from . import checkpoint as ckpt
from .datasets import tensors_of, to_device_compact
from .evaluate import to_device


class TrainBatches:
    """Training batches. Tensor datasets live on the device and are batched by index with a
    per-epoch permutation (no per-sample Python, no DataLoader); others use a DataLoader."""

    def __init__(self, dataset: Any, batch_size: int, device: torch.device, num_workers: int):
        self.batch_size, self.device = batch_size, device
        tensors = tensors_of(dataset)
        self.tensors = tuple(to_device_compact(t, device) for t in tensors) if tensors else None
        if self.tensors is not None:
            self.length = len(self.tensors[0])
            self.num_batches = math.ceil(self.length / batch_size)
        else:
            self.loader = DataLoader(
                dataset,
                batch_size=batch_size,
                shuffle=True,
                num_workers=num_workers,
                pin_memory=device.type == "cuda",
                collate_fn=getattr(dataset, "collate_fn", None),  # datasets.Collated
            )
            self.num_batches = len(self.loader)

    def new_order(self) -> torch.Tensor:
        """This epoch's order: a permutation, or (DataLoader) the RNG state that shuffles it."""
        if self.tensors is not None:
            return torch.randperm(self.length, device=self.device)
        return torch.get_rng_state()

    def epoch(self, order: torch.Tensor, start: int, indices: bool = False) -> Iterator[Any]:
        """This epoch's batches from batch `start` on; with `indices`, a tensor dataset's index
        slices instead (GraphStep gathers them itself)."""
        if self.tensors is not None:
            for i in range(start * self.batch_size, self.length, self.batch_size):
                idx = order[i : i + self.batch_size]
                yield idx if indices else tuple(t[idx] for t in self.tensors)
            return
        # Resuming mid-epoch: replay the epoch's shuffle, skip what was trained, then restore
        # the RNG as it was at the checkpoint.
        current = ckpt.rng_states() if start else None
        torch.set_rng_state(order)
        for i, batch in enumerate(self.loader):
            if i < start:
                continue
            if current is not None:
                ckpt.set_rng_states(current)
                current = None
            yield tuple(to_device(b, self.device) for b in batch)
