"""Model helpers the seed's files call."""

from __future__ import annotations

import math

import torch
from torch import nn


class EncoderConv2d(nn.Module):
    """Unpadded stride-1 convolutions with ReLU between them, flattened, then Linear(code_size)."""

    def __init__(
        self,
        shape: tuple[int, int, int],
        code_size: int,
        channels: tuple[int, ...] = (32, 32, 32),
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        self.shape = tuple(shape)
        self.code_size = code_size
        layers: list[nn.Module] = []
        in_channels = self.shape[0]
        for i, out_channels in enumerate(channels):
            if i:
                layers.append(nn.ReLU())
            layers.append(nn.Conv2d(in_channels, out_channels, kernel_size))
            in_channels = out_channels
        self.convolution = nn.Sequential(*layers)
        shrink = len(channels) * (kernel_size - 1)
        flat = in_channels * math.prod(s - shrink for s in self.shape[1:])
        self.linear = nn.Linear(flat, code_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convolution(x).flatten(1))


def count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
