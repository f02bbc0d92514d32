"""The autoencoder trainer: the model learns to give back its input.

nn-experiments' most used trainer after the classification one (`TrainAutoencoder`). Each
training and validation item becomes (input, input), so the loop's loss is the reconstruction
loss (`loss_function` between the model's output and its input) and `validation_loss` is the
reconstruction loss on the validation set; the rest of the loop is the shared one.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch.utils.data import Dataset

from .datasets import tensors_of


class ReconstructionPairs(Dataset):
    """Items (x, x) from a dataset of x or (x, ...): the target is the input.

    A tensor dataset stays one (the same tensor twice), so the loop keeps its on-device path.
    """

    def __init__(self, source: Any) -> None:
        self.source = source
        tensors = tensors_of(source)
        self.tensors: tuple[torch.Tensor, ...] | None = (
            (tensors[0], tensors[0]) if tensors else None
        )

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        item = self.source[index]
        x = item[0] if isinstance(item, tuple | list) else item
        return x, x


class AutoencoderTrainer:
    """Trains model(x) towards x and validates the reconstruction loss."""

    representation = False

    def prepare(self, run: Any) -> Any:
        if run.validation_set is None:
            raise ValueError("the autoencoder trainer needs a 'validation_set' to validate on")
        return dataclasses.replace(
            run,
            train_set=ReconstructionPairs(run.train_set),
            validation_set=ReconstructionPairs(run.validation_set),
        )
