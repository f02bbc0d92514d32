"""What a researcher publishes: the write-up (`report`), the trained model (`pull`), and the
curves for TensorBoard (`export`). All go through the API."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Annotated

import typer

from cli.client import ApiClient, CliError
from cli.common import SweepArg, console
from cli.table_opts import (
    AverageOpt,
    AverageStdOpt,
    ExcludeOpt,
    IncludeOpt,
    SortOpt,
    table_query,
)

ForceOpt = Annotated[bool, typer.Option("--force", help="write into a folder or file that exists")]


def report(
    sweep: SweepArg,
    out: Annotated[
        Path | None, typer.Option("--out", help="folder to write (default: sweep-<id>-report)")
    ] = None,
    force: ForceOpt = False,
    include: IncludeOpt = None,
    exclude: ExcludeOpt = None,
    sort: SortOpt = None,
    average: AverageOpt = None,
    average_std: AverageStdOpt = None,
) -> None:
    """Write SWEEP's write-up: report.md with the table and PNG learning curves, and its file."""
    target = out or Path(f"sweep-{sweep}-report")
    if target.exists() and not target.is_dir():
        raise CliError(f"{target} exists and is not a folder; choose another --out")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise CliError(f"{target} exists and is not empty; choose another --out or pass --force")
    params = table_query(include, exclude, sort, average, average_std)
    with ApiClient.from_settings() as client:
        body = client.request(
            "GET", f"/sweeps/{sweep}/report", params={k: v for k, v in params.items() if v}
        ).content
    names = _extract(body, target)
    plots = sum(name.endswith(".png") for name in names)
    console.print(f"wrote {target / 'report.md'} ({plots} plot(s), {len(names)} files)")


def _extract(body: bytes, target: Path) -> list[str]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(body))
    except zipfile.BadZipFile:
        raise CliError("the API answered with something that is not a report zip") from None
    root = target.resolve()
    with archive:
        names = archive.namelist()
        for name in names:
            path = (root / name).resolve()
            if not path.is_relative_to(root):
                raise CliError(f"the report holds a path outside its folder: {name!r}")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(archive.read(name))
    return names


def pull(
    run_id: Annotated[int, typer.Argument(metavar="RUN", help="run id", show_default=False)],
    out: Annotated[
        Path | None, typer.Option("--out", help="file to write (default: run-<id>.pt)")
    ] = None,
    force: ForceOpt = False,
) -> None:
    """Download RUN's trained model: its state dict and resolved configuration (README)."""
    target = out or Path(f"run-{run_id}.pt")
    if target.exists() and not force:
        raise CliError(f"{target} exists; choose another --out or pass --force")
    with ApiClient.from_settings() as client:
        size = client.download(f"/runs/{run_id}/checkpoint", target)
    console.print(f"wrote {target} ({size:,} bytes)")


def export(
    sweep: SweepArg,
    tensorboard: Annotated[
        Path, typer.Option("--tensorboard", help="folder for TensorBoard event files")
    ],
    force: ForceOpt = False,
) -> None:
    """Write SWEEP's learning curves for `tensorboard --logdir DIR`: a folder per run."""
    from cli.tensorboard import check_free, run_folder, write_run

    taken: set[Path] = set()
    with ApiClient.from_settings() as client:
        runs = client.sweep(sweep, every=True)["runs"]  # a big sweep's runs span pages
        folders = {
            r["id"]: run_folder(tensorboard, r["experiment_name"], r["id"], taken) for r in runs
        }
        for folder in folders.values():
            check_free(folder, force)
        for run in runs:
            data = client.get(f"/runs/{run['id']}/metrics")
            series = data.get("series") or {}
            if not any(series.values()):
                console.print(f"run {run['id']}: no metrics yet ({run['status']}), skipped")
                continue
            points = write_run(folders[run["id"]], series, data.get("non_finite") or {})
            console.print(f"run {run['id']}: {points} points -> {folders[run['id']]}")
