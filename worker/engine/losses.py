"""loss_function: FORMAT.md's aliases, torch.nn.functional / torch.nn names, or code."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch.nn.functional as F
from torch import nn

_ALIASES: dict[str, Callable[[], Callable]] = {
    "l1": nn.L1Loss,
    "mae": nn.L1Loss,
    "l2": nn.MSELoss,
    "mse": nn.MSELoss,
    "ce": nn.CrossEntropyLoss,
    "cross_entropy": nn.CrossEntropyLoss,
    "bce": nn.BCELoss,
    "binary_cross_entropy": nn.BCELoss,
    "kl_div": lambda: nn.KLDivLoss(reduction="batchmean"),
}


def make_loss(value: Any) -> Callable:
    """A callable loss(output, target). `value` is a name, or what a code block evaluated to."""
    if value is None:
        return nn.L1Loss()
    if not isinstance(value, str):
        if inspect.isclass(value) and issubclass(value, nn.Module):
            return value()
        if callable(value):
            return value
        raise TypeError(f"loss_function must be a name or callable, got {type(value).__name__}")
    if value in _ALIASES:
        return _ALIASES[value]()
    function = getattr(F, value, None)
    if callable(function) and not inspect.isclass(function):
        return function
    cls = getattr(nn, value, None)
    if inspect.isclass(cls) and issubclass(cls, nn.Module):
        return cls()
    raise ValueError(
        f"loss_function {value!r} is not an alias ({', '.join(_ALIASES)}), "
        "a torch.nn.functional function or a torch.nn class"
    )
