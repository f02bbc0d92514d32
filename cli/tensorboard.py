"""Learning curves as TensorBoard event files: one folder per run, named by its experiment name.

Written with the `tensorboard` package's own event-file writer (no torch, no TensorFlow), one
scalar per (metric key, inputs seen); `tensorboard --logdir DIR` shows the sweep.
"""

from __future__ import annotations

import math
import time
from pathlib import Path, PurePosixPath
from typing import Any

from cli.client import CliError

NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
SUFFIX = ".sweeps"


def run_folder(root: Path, experiment_name: str, run_id: int, taken: set[Path]) -> Path:
    """root/<experiment name>, its `/` kept as sub-folders; never outside root."""
    parts = [p for p in PurePosixPath(experiment_name).parts if p not in ("", ".", "..", "/")]
    folder = root.joinpath(*parts) if parts else root / f"run-{run_id}"
    if folder in taken:  # two runs of one name: keep both
        folder = folder.with_name(f"{folder.name}-run-{run_id}")
    taken.add(folder)
    return folder


def check_free(folder: Path, force: bool) -> None:
    """Refuse a folder that holds event files already (a second export would double the
    curves), unless `force`: then those files are removed."""
    old = sorted(folder.glob("events.out.tfevents.*")) if folder.is_dir() else []
    if old and not force:
        raise CliError(f"{folder} holds TensorBoard event files already; pass --force to replace")
    for path in old:
        path.unlink()


def write_run(folder: Path, series: dict[str, Any], non_finite: dict[str, Any]) -> int:
    """One event file with every point of `series` (key -> [[step, value], ...])."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    folder.mkdir(parents=True, exist_ok=True)
    writer = EventFileWriter(str(folder), filename_suffix=SUFFIX)
    written = 0
    now = time.time()
    try:
        for key, points in series.items():
            odd = {
                int(step): NON_FINITE.get(name, math.nan) for step, name in non_finite.get(key, [])
            }
            for step, value in points:
                number = odd.get(int(step), math.nan) if value is None else float(value)
                scalar = summary_pb2.Summary.Value(tag=key, simple_value=number)
                event = event_pb2.Event(
                    wall_time=now, step=int(step), summary=summary_pb2.Summary(value=[scalar])
                )
                writer.add_event(event)
                written += 1
    finally:
        writer.close()
    return written
