"""A run's trained model back from `sweeps pull`'s file: rebuild it from its configuration."""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

import torch
from torch import nn

from .build import build_model
from .checkpoint import MODEL_FORMAT


def read_model_file(source: str | Path | IO[bytes]) -> dict[str, Any]:
    """The file's contents: `state_dict`, `config` (the run's resolved configuration), `format`."""
    data = torch.load(source, map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
        raise ValueError(f"{source} is not a model file of sweeps ({MODEL_FORMAT})")
    return data


def load_model(source: str | Path | IO[bytes], data_dir: str | Path | None = None) -> nn.Module:
    """The run's model, built by its sweep file's `model` code, with the trained weights loaded.

    `data_dir` is where the run's globals find Fashion-MNIST/MNIST, if they load a dataset.
    """
    data = read_model_file(source)
    model, _ = build_model(data["config"], data_dir)
    model.load_state_dict(data["state_dict"])
    return model.eval()
