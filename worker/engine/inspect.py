"""Build each run of a sweep file without training: parameter count and model summary."""

from __future__ import annotations

from typing import Any

import torch

from .build import build_model
from .models import count_trainable


def inspect_config(config: dict[str, Any]) -> dict[str, Any]:
    """The model of one run's configuration (built on the CPU, nothing trained, no data read)."""
    with torch.device("cpu"):
        model, _ = build_model(config)
    return {
        "params": count_trainable(model),
        "params_total": sum(p.numel() for p in model.parameters()),
        "summary": str(model),
    }


def inspect_sweep(yaml_text: str | bytes, plugins: str = "") -> list[dict[str, Any]]:
    """Per run: matrix_id, slug, experiment_name, params (trainable), params_total, summary.

    `plugins`: the SWEEPS_PLUGINS setting; their names are given to the runs' code.
    """
    from shared.plugins import plugin_modules
    from shared.sweepfile import parse_sweep  # pure Python (yaml + simpleeval); imported when used
    from worker.plugins import load

    load(plugins)
    rows = []
    for run in parse_sweep(yaml_text, plugins=plugin_modules(plugins)).runs:
        row = {"matrix_id": run.matrix_id, "slug": run.slug, "experiment_name": run.experiment_name}
        row.update(inspect_config(run.config))
        rows.append(row)
    return rows
