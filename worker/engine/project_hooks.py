"""What sweeps adds around a project trainer's own `train()` (project_trainer.py builds it).

- `Watch`: every scalar the trainer writes to its TensorBoard writer (its `log_scalar`, or the
  writer directly) becomes a metric point at the step it was written at (nn-experiments logs at
  `num_input_steps`); a forward pre-hook on the model polls `should_stop()` every few calls and
  ends `train()` with RunCancelled, and reports progress.
- `CheckpointSync`: after each of the trainer's `save_checkpoint()` calls, the files of its
  checkpoint folder (and the points so far, for a resume's replay) are copied to the run's
  artifact folder, local or object store; a resumed run gets them back before it loads.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from shared.artifacts import Folder

from .trainer import RunCancelled

POLL_EVERY_CALLS = 10  # forward calls between should_stop() polls
MAX_KEY_CHARS = 100  # metrics.key is VARCHAR(100)
POINTS_FILE = "sweeps-points.json"

Report = Callable[..., None]


class Watch:
    """Metric points and stop polling for one project trainer."""

    def __init__(self, report: Report, should_stop: Callable[[], bool] | None,
                 max_inputs: int | None) -> None:  # fmt: skip
        self.report = report
        self.should_stop = should_stop
        self.max_inputs = max_inputs
        self.trainer: Any = None
        self.history: list[tuple[str, int, float]] = []
        self.summary: dict[str, float] = {}
        self._calls = 0

    def attach(self, trainer: Any) -> None:
        """Report what the trainer's writer receives; poll stops from its model's forward."""
        self.trainer = trainer
        writer = getattr(trainer, "writer", None)
        if writer is not None:
            trainer.writer = ReportingWriter(writer, self.scalar)
        model = getattr(trainer, "model", None)
        if isinstance(model, torch.nn.Module):
            model.register_forward_pre_hook(self._on_forward)

    def inputs(self) -> int:
        return int(getattr(self.trainer, "num_input_steps", 0) or 0)

    def scalar(self, tag: str, step: int | None, value: Any) -> None:
        if isinstance(value, torch.Tensor):
            value = value.detach().float().mean().item()
        try:
            number = float(value)
        except (TypeError, ValueError):
            return  # not a number: TensorBoard's business only
        point = (str(tag)[:MAX_KEY_CHARS], int(self.inputs() if step is None else step), number)
        self.emit([point])
        self.poll()  # also for trainers whose steps do not call the model itself

    def emit(self, points: list[tuple[str, int, float]], event: str = "metrics") -> None:
        self.report(event, points=points)
        self.history.extend(points)
        for key, _, value in points:
            self.summary[key] = value

    def poll(self) -> None:
        if self.should_stop is not None and self.should_stop():
            raise RunCancelled(f"cancelled at {self.inputs()} inputs")

    def _on_forward(self, *_: Any) -> None:
        self._calls += 1
        if self._calls % POLL_EVERY_CALLS == 0:
            self.report("progress", inputs=self.inputs(), total=self.max_inputs,
                        epoch=int(getattr(self.trainer, "epoch", 0) or 0))  # fmt: skip
            self.poll()


class ReportingWriter:
    """A SummaryWriter that also hands every scalar to `sink(tag, step, value)`."""

    def __init__(self, writer: Any, sink: Callable[[str, int | None, Any], None]) -> None:
        self._writer = writer
        self._sink = sink

    def add_scalar(self, tag: str, scalar_value: Any, global_step: int | None = None,
                   *args: Any, **kwargs: Any) -> Any:  # fmt: skip
        result = self._writer.add_scalar(tag, scalar_value, global_step, *args, **kwargs)
        self._sink(tag, global_step, scalar_value)
        return result

    def add_scalars(self, main_tag: str, values: dict[str, Any], global_step: int | None = None,
                    *args: Any, **kwargs: Any) -> Any:  # fmt: skip
        result = self._writer.add_scalars(main_tag, values, global_step, *args, **kwargs)
        for name, value in values.items():
            self._sink(f"{main_tag}/{name}", global_step, value)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._writer, name)


class CheckpointSync:
    """Mirrors a local folder's files into an artifact folder, changed files only."""

    def __init__(self, local: Path, store: Folder) -> None:
        self.local = local
        self.store = store
        self._sent: dict[str, tuple[int, int]] = {}

    def push(self) -> None:
        if not self.local.is_dir():
            return
        for path in sorted(self.local.iterdir()):
            if not path.is_file():
                continue
            stat = path.stat()
            mark = (stat.st_mtime_ns, stat.st_size)
            if self._sent.get(path.name) != mark:
                data = path.read_bytes()
                self.store.write(path.name, lambda fh, data=data: fh.write(data))
                self._sent[path.name] = mark

    def pull(self) -> bool:
        """Copy the stored files into the local folder; False when there are none."""
        names = [n for n in self.store.names() if not n.startswith(".")]
        if not names:
            return False
        self.local.mkdir(parents=True, exist_ok=True)
        for name in names:
            fh = self.store.read(name)
            if fh is not None:
                with fh:
                    (self.local / name).write_bytes(fh.read())
        return True


def points_blob(history: list[tuple[str, int, float]]) -> bytes:
    """The points so far as JSON (non-finite values as strings, which JSON lacks)."""
    rows = [[k, s, v if math.isfinite(v) else repr(v)] for k, s, v in history]
    return json.dumps(rows).encode()


def points_of(blob: bytes | None) -> list[tuple[str, int, float]]:
    if not blob:
        return []
    return [(str(k), int(s), float(v)) for k, s, v in json.loads(blob)]
