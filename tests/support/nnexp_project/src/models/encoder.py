"""The project's own EncoderConv2d: other arguments than sweeps' built-in of that name."""

import torch.nn as nn

__all__ = ["EncoderConv2d"]


class EncoderConv2d(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, width: int = 8):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(channels_in, width, 3, padding=1), nn.GELU(),
            nn.Conv2d(width, channels_out, 3, padding=1),
        )

    def forward(self, x):
        return self.layers(x)
