"""Build each run of a sweep file without training: parameter count and model summary."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from .build import build_model
from .models import count_trainable

if TYPE_CHECKING:
    from shared.settings import Settings


def inspect_config(config: dict[str, Any]) -> dict[str, Any]:
    """The model of one run's configuration (built on the CPU, nothing trained, no data read)."""
    with torch.device("cpu"):
        model, _ = build_model(config)
    return {
        "params": count_trainable(model),
        "params_total": sum(p.numel() for p in model.parameters()),
        "summary": str(model),
    }


def inspect_sweep(yaml_text: str | bytes, settings: Settings | None = None) -> list[dict[str, Any]]:
    """Per run: matrix_id, slug, experiment_name, params (trainable), params_total, summary.

    `settings`: the plugins and project whose names the runs' code is given (default: none).
    """
    from shared.plugins import parse_options
    from shared.settings import Settings
    from shared.sweepfile import parse_sweep  # pure Python (yaml + simpleeval); imported when used
    from worker import plugins, project

    settings = settings or Settings(plugins="", project_root=None)
    plugins.load(settings.plugins)
    project.load(settings.project_root)
    rows = []
    for run in parse_sweep(yaml_text, **parse_options(settings)).runs:
        row = {"matrix_id": run.matrix_id, "slug": run.slug, "experiment_name": run.experiment_name}
        row.update(inspect_config(project.fill_path(run.config)))
        rows.append(row)
    return rows
