import torch.nn as nn


class ResConv(nn.Module):
    """A stack of same-size convolutions; the block's output is added to its input."""

    def __init__(self, in_channels: int, out_channels=None, num_layers: int = 2, channels=8,
                 kernel_size=3, padding=1, activation: str = "gelu"):
        super().__init__()
        out_channels = out_channels or in_channels
        channels = channels if isinstance(channels, (list, tuple)) else [channels] * num_layers
        act = {"gelu": nn.GELU, "relu": nn.ReLU, "mish": nn.Mish}[activation]
        layers, ch = [], in_channels
        for i in range(num_layers):
            last = i == num_layers - 1
            layers.append(nn.Conv2d(ch, out_channels if last else channels[i], kernel_size,
                                    padding=padding))
            if not last:
                layers.append(act())
            ch = channels[i]
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(x)
