"""A sweep's write-up: Markdown with the sweep file, the table and PNG learning curves.

`sweeps report` and the UI's download both get it as a zip from GET /sweeps/{id}/report:
`report.md`, `table.csv`, `sweep.yaml` and `plots/<metric>.png`. The table takes the table
options (shared/table_options.py); the plots draw one line per row of that table (a metric
excluded from the table gets no plot), so an averaged table gives one line per configuration
with a band of ± std (sample std, as the table's).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from shared import metric_keys as keys
from shared.domain.metrics import metric_series
from shared.domain.reads import get_sweep
from shared.domain.results import options_table
from shared.plots import Curve, Point, curve, plot_png
from shared.results_table import Row, Table, to_markdown
from shared.sweepfile.matrix import make_slug
from shared.table_options import TableOptions, render

# (metric key, title, y label): the validation loss and each accuracy, as the seed plots them.
PLOTTED = (
    (keys.VALIDATION_LOSS, "validation loss", "loss"),
    (keys.ACCURACY_ARGMAX, "accuracy (argmax)", "accuracy"),
    (keys.ACCURACY_SVC, "accuracy (svc)", "accuracy"),
    (keys.ACCURACY_SVC_HELDOUT, "accuracy (svc held-out)", "accuracy"),
)


@dataclass(frozen=True)
class Report:
    name: str  # the sweep's
    files: dict[str, bytes]  # path in the report -> content

    def zip_bytes(self) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path, content in self.files.items():
                archive.writestr(path, content)
        return buffer.getvalue()


def sweep_report(session: Session, sweep_id: int, options: TableOptions) -> Report:
    """The write-up of one sweep (NotFound, TableOptionError as the table route)."""
    sweep = get_sweep(session, sweep_id)
    table = options_table(session, options, sweep_ids=[sweep_id])
    series = _series(session, table, [key for key, _, _ in PLOTTED])
    plots: list[tuple[str, str]] = []
    files: dict[str, bytes] = {}
    shown = {column.key for column in table.columns}
    for key, title, ylabel in PLOTTED:
        if key not in shown:
            continue  # excluded from the table (`-ec`): left out of the write-up too
        curves = [c for row in table.rows if (c := _curve(row, table, series, key))]
        if not curves:
            continue  # no run reported this metric (e.g. no SVC accuracies)
        path = f"plots/{key}.png"
        files[path] = plot_png(f"{sweep.name}: {title}", curves, ylabel=ylabel)
        plots.append((title, path))
    text = report_markdown(
        sweep.name, sweep_id, sweep.yaml_text, to_markdown(table), plots, options
    )
    csv_text = render(table, "csv", options)
    assert isinstance(csv_text, str)
    return Report(
        sweep.name,
        {
            "report.md": text.encode(),
            "table.csv": csv_text.encode(),
            "sweep.yaml": sweep.yaml_text.encode(),
            **files,
        },
    )


def _runs_of(row: Row) -> list[int]:
    return list(row.group.run_ids) if row.group is not None else [row.run.run_id]


def _series(session: Session, table: Table, keys: list[str]) -> dict[int, dict[str, list[Point]]]:
    wanted = {run_id for row in table.rows for run_id in _runs_of(row)}
    return {run_id: metric_series(session, run_id, keys=keys).points for run_id in sorted(wanted)}


def _curve(
    row: Row, table: Table, series: dict[int, dict[str, list[Point]]], key: str
) -> Curve | None:
    if row.group is not None:
        label = make_slug(row.group.params) or "all"
        label += f" (n={len(row.group.run_ids)})"
    else:
        label = row.run.slug or row.run.matrix_id
    return curve(label, [series[run_id].get(key, []) for run_id in _runs_of(row)])


def report_markdown(
    name: str,
    sweep_id: int,
    yaml_text: str,
    table_markdown: str,
    plots: Iterable[tuple[str, str]],
    options: TableOptions,
) -> str:
    """The report's text: the table, the plots, then the sweep file that produced them."""
    lines = [f"# {name}", "", f"Sweep {sweep_id}."]
    if options.average:
        std = ", ".join(options.average_std) or "none"
        lines.append(
            f"Averaged over `{options.average}`: one row and one line per configuration, "
            f"the mean of the runs that finished (std columns: {std}; the bands are ± one "
            "sample standard deviation)."
        )
    lines += ["", "## Results", "", table_markdown.rstrip(), "", "## Learning curves", ""]
    for title, path in plots:
        lines += [f"![{title}]({path})", ""]
    fence = "````" if "```" in yaml_text else "```"
    lines += ["## Sweep file", "", f"{fence}yaml", yaml_text.rstrip(), fence, ""]
    return "\n".join(lines)
