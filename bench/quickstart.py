"""`make run`'s path to its first training step: `sweeps run examples/fmnist_vit_quick.yaml`.

    python bench/quickstart.py        # with .venv present; prints the timeline, then stops

Starts the command in a scratch folder (its own .sweeps state, so nothing is reused), waits until
the run reports training progress, cancels the sweep (the run ends cancelled and records its
phases), then presses Ctrl-C. The first step's time is the run's claim time after the command
started plus its phases before training (claim, imports, data, build, resume).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "fmnist_vit_quick.yaml"
BEFORE_TRAINING = ("claim", "imports", "data", "build", "resume")


def _row(db: Path, query: str) -> tuple | None:
    if not db.exists():
        return None
    try:
        with sqlite3.connect(db) as conn:
            return conn.execute(query).fetchone()
    except sqlite3.Error:  # not migrated yet, or locked for a moment
        return None


def _when(text: str) -> datetime:
    stamp = datetime.fromisoformat(text)
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def main() -> None:
    import json

    folder = Path(tempfile.mkdtemp(prefix="sweeps-quickstart-"))
    db = folder / ".sweeps" / "sweeps.db"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    print(f"load {os.getloadavg()[0]:.2f} at the start; scratch folder {folder}", flush=True)
    started = datetime.now(UTC)
    with open(folder / "run.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "cli", "run", str(EXAMPLE)], cwd=folder,
                                   env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        try:
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline and process.poll() is None:
                row = _row(db, "select inputs_seen from runs order by id limit 1")
                if row and row[0]:
                    break
                time.sleep(0.5)
            seen = datetime.now(UTC)
            # Cancel through the CLI and wait for the run to record its outcome and phases
            # (Ctrl-C alone stops the stack before a slow run process has written them).
            subprocess.run([sys.executable, "-m", "cli", "cancel", "1"], cwd=folder, env=env,
                           stdout=log, stderr=subprocess.STDOUT, timeout=60)  # fmt: skip
            while time.monotonic() < deadline + 120:
                if _row(db, "select phases from runs where phases is not null limit 1"):
                    break
                time.sleep(0.5)
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(120)
    row = _row(db, "select s.created_at, r.started_at, r.phases, r.status from runs r "
                   "join sweeps s on s.id = r.sweep_id order by r.id limit 1")  # fmt: skip
    if row is None or row[1] is None or row[2] is None:
        sys.exit(f"the run did not start or record its phases; see {folder / 'run.log'}")
    submitted, claimed = _when(row[0]), _when(row[1])
    phases = json.loads(row[2])
    first_step = (claimed - started).total_seconds() + sum(
        phases.get(name, 0.0) for name in BEFORE_TRAINING if name != "claim"
    )
    print(f"  sweep submitted      {(submitted - started).total_seconds():6.1f} s "
          "(Redis, migrations, API and worker up)")  # fmt: skip
    print(f"  run claimed          {(claimed - started).total_seconds():6.1f} s")
    for name in BEFORE_TRAINING:
        print(f"    {name:18s} {phases.get(name, 0.0):6.2f} s")
    print(f"  first training step  {first_step:6.1f} s")
    print(f"  progress seen        {(seen - started).total_seconds():6.1f} s "
          f"(first report); the run ended {row[3]}")  # fmt: skip
    print(f"load {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
