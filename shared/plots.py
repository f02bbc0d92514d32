"""PNG learning curves for reports: one line per run or per averaged configuration.

matplotlib draws through its Agg canvas on a Figure of its own (no pyplot, so no global state
shared between requests). Each PNG names its lines in a `Lines` text chunk (JSON), so a
reader, and the tests, can tell what was drawn without reading pixels.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass

from shared.table_average import stat

Point = tuple[int, float | None]  # (inputs seen, value); None for a NaN


@dataclass(frozen=True)
class Curve:
    label: str
    steps: list[int]
    mean: list[float]
    std: list[float | None]  # per step; None where there is no band (one run)


def curve(label: str, runs: Sequence[Sequence[Point]]) -> Curve | None:
    """The mean (and sample std) of the runs' points at the steps all of them have."""
    runs = [points for points in runs if points]
    if not runs:
        return None
    common = set.intersection(*({step for step, _ in points} for points in runs))
    by_step: dict[int, list[float | None]] = {step: [] for step in common}
    for points in runs:
        for step, value in points:
            if step in by_step:
                by_step[step].append(value)
    steps, means, stds = [], [], []
    for step in sorted(by_step):
        s = stat(by_step[step])
        if s.mean is None:
            continue  # only NaNs here: a gap in the line
        steps.append(step)
        means.append(s.mean)
        stds.append(s.std)
    return Curve(label, steps, means, stds) if steps else None


def plot_png(title: str, curves: Sequence[Curve], *, ylabel: str) -> bytes:
    """A line per curve against inputs seen, with a ± std band where there is one."""
    # Imported here: only reports need matplotlib, and the API starts faster without it.
    from matplotlib.figure import Figure
    from matplotlib.ticker import StrMethodFormatter

    figure = Figure(figsize=(8, 4.5), dpi=100, layout="constrained")
    axes = figure.subplots()
    for c in curves:
        (line,) = axes.plot(c.steps, c.mean, label=c.label, linewidth=1.4)
        band = [(x, m, s) for x, m, s in zip(c.steps, c.mean, c.std, strict=True) if s is not None]
        if band:
            xs = [x for x, _, _ in band]
            axes.fill_between(
                xs,
                [m - s for _, m, s in band],
                [m + s for _, m, s in band],
                color=line.get_color(),
                alpha=0.2,
                linewidth=0,
            )
    axes.set_title(title)
    axes.set_xlabel("inputs seen")
    axes.xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    axes.set_ylabel(ylabel)
    axes.grid(True, alpha=0.3)
    if curves:
        axes.legend(fontsize="small", loc="best")
    buffer = io.BytesIO()
    labels = json.dumps([c.label for c in curves])
    figure.savefig(buffer, format="png", metadata={"Title": title, "Lines": labels})
    return buffer.getvalue()
