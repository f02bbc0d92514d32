"""The GPU pass's results, readable: the seed's ViT table next to ours, from the stack's database.

    .venv/bin/python bench/gpu_results.py PASS [PASS ...] [--out bench/results]

Each PASS is what one bench/gpu.sh command brought back through $OUT (gpu-pass-*.tar.gz, or
its unpacked folder): e2e*/sweeps.db.gz (the embedded stack's SQLite database), e2e*/e2e.json
(K, rows, switches), env.txt (the machine). Give the passes in order: a continued slice's
database holds the earlier slices' runs too, so the last one is read. It writes
OUT/gpu-seed-table.json (machine, versions, K, per row: the seed's numbers, ours, wall seconds,
inputs/s), OUT/gpu-seed-table.md (the table for BENCHMARKS.md) and OUT/gpu-seed-curves.png
(each row's validation loss curve, the seed's final value marked; only where matplotlib is
installed: `pip install -e .[bench]`). Reads the database with sqlite3 alone.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sqlite3
import sys
import tarfile
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

SEED_TABLE = Path(__file__).resolve().parent / "data" / "seed_vit_table.json"
SHAPE_KEYS = ("layer", "head", "hidden", "mlp", "cs")
OUR_KEYS = ("validation_loss", "accuracy_argmax", "accuracy_svc", "accuracy_svc_heldout",
            "model_params", "train_seconds", "throughput")  # fmt: skip


def open_db(path: Path, tmp: Path) -> sqlite3.Connection:
    if path.suffix == ".gz":
        plain = tmp / path.stem
        plain.write_bytes(gzip.decompress(path.read_bytes()))
        path = plain
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def our_runs(db: sqlite3.Connection) -> dict[tuple, dict[str, Any]]:
    """The latest succeeded run per row shape, with its final metrics and validation curve."""
    db.row_factory = sqlite3.Row
    out: dict[tuple, dict[str, Any]] = {}
    rows = db.execute("SELECT * FROM runs WHERE status = 'succeeded' ORDER BY id").fetchall()
    for run in rows:
        params = json.loads(run["params"] or "{}")
        shape = tuple(params.get(k) for k in SHAPE_KEYS)
        source = run["reused_from_id"] or run["id"]
        metrics = db.execute(
            "SELECT key, step, value FROM metrics WHERE run_id = ? ORDER BY step", (source,)
        ).fetchall()
        final: dict[str, float] = {}
        curve: list[tuple[int, float]] = []
        for m in metrics:
            final[m["key"]] = m["value"]  # ordered by step: the last one wins
            if m["key"] == "validation_loss":
                curve.append((m["step"], m["value"]))
        original = db.execute("SELECT * FROM runs WHERE id = ?", (source,)).fetchone()
        wall = _seconds(original["started_at"], original["finished_at"])
        inputs = original["inputs_seen"]
        out[shape] = {
            "run_id": source, "inputs": inputs, "wall_seconds": wall,
            "inputs_per_s": inputs / wall if wall and inputs else None,
            **{k: final.get(k) for k in OUR_KEYS}, "validation_curve": curve,
            "device": original["device"],
        }  # fmt: skip
    return out


def sweep_seconds(db: sqlite3.Connection) -> float | None:
    """Submit to table of the last sweep (a continued slice counts from its own submit)."""
    row = db.execute("SELECT created_at, finished_at FROM sweeps ORDER BY id DESC").fetchone()
    return _seconds(row[0], row[1]) if row else None


def unpack(sources: list[Path], tmp: Path) -> Path:
    """One folder with every pass's files: a later pass's env.txt and e2e slices win."""
    merged = tmp / "merged"
    merged.mkdir()
    for i, source in enumerate(sources):
        folder = source
        if source.is_file():
            folder = tmp / f"pass{i}"
            with tarfile.open(source) as tar:
                tar.extractall(folder, filter="data")
        for item in folder.iterdir():
            name = (
                f"{item.name}-{i}" if item.name.startswith("e2e") and item.is_dir() else item.name
            )
            target = merged / name
            if item.is_dir():
                shutil.copytree(item, target, dirs_exist_ok=True)
            else:
                shutil.copy2(item, target)
    return merged


def build(results: Path) -> dict[str, Any]:
    seed = json.loads(SEED_TABLE.read_text())
    slices = sorted(
        results.glob("e2e*/e2e.json"), key=lambda p: int(p.parent.name.rsplit("-", 1)[1])
    )
    if not slices:
        raise SystemExit(f"{results}: no e2e*/e2e.json (did the e2e stage run?)")
    last = slices[-1].parent
    env = (results / "env.txt").read_text() if (results / "env.txt").exists() else ""
    with tempfile.TemporaryDirectory() as tmp:
        db = open_db(last / "sweeps.db.gz", Path(tmp))
        ours, sweep_wall = our_runs(db), sweep_seconds(db)
        db.close()
    table = []
    for row in seed["rows"]:
        mine = ours.get(tuple(row[k] for k in SHAPE_KEYS))
        seed_part = {k: row[k] for k in ("validation_loss", "accuracy_argmax", "accuracy_svc",
                                         "inputs")}  # fmt: skip
        diff = None
        if mine and mine["accuracy_argmax"] is not None:
            diff = {k: mine[k] - row[k] for k in ("accuracy_argmax", "accuracy_svc")
                    if mine.get(k) is not None}  # fmt: skip
        table.append({"name": row["name"], **{k: row[k] for k in SHAPE_KEYS},
                      "seed": seed_part, "ours": mine, "ours_minus_seed": diff})  # fmt: skip
    return {
        "machine": env.strip(),
        "slices": [json.loads(p.read_text()) for p in slices],
        "k": json.loads(slices[-1].read_text())["k"],
        "sweep_wall_seconds_last_slice": sweep_wall,
        "rows_done": sum(1 for r in table if r["ours"]),
        "rows": table,
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "| row | layer | head | hidden | mlp | cs | seed val loss | ours | seed argmax | ours "
        "| seed svc | ours | wall s | inputs/s |",
        "|:---|" + "---:|" * 13,
    ]
    for r in result["rows"]:
        o, s = r["ours"] or {}, r["seed"]

        def f(v: Any, fmt: str) -> str:
            return "-" if v is None else format(v, fmt)

        lines.append(
            f"| {r['name']} | {r['layer']} | {r['head']} | {r['hidden']} | {r['mlp']} | {r['cs']} "
            f"| {s['validation_loss']:.5f} | {f(o.get('validation_loss'), '.5f')} "
            f"| {s['accuracy_argmax']:.4f} | {f(o.get('accuracy_argmax'), '.4f')} "
            f"| {s['accuracy_svc']:.4f} | {f(o.get('accuracy_svc'), '.4f')} "
            f"| {f(o.get('wall_seconds'), '.0f')} | {f(o.get('inputs_per_s'), ',.0f')} |"
        )
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no matplotlib: PNG skipped (pip install -e .[bench])", file=sys.stderr)
        return False
    fig, ax = plt.subplots(figsize=(10, 6))
    for i, r in enumerate(result["rows"]):
        color = f"C{i}"
        curve = (r["ours"] or {}).get("validation_curve") or []
        if curve:
            ax.plot([s for s, _ in curve], [v for _, v in curve], color=color, label=r["name"])
        ax.scatter([r["seed"]["inputs"]], [r["seed"]["validation_loss"]], color=color, marker="*",
                   s=120, edgecolors="black", zorder=3)  # fmt: skip
    ax.set_xlabel("training inputs")
    ax.set_ylabel("validation loss (l2)")
    ax.set_yscale("log")
    ax.set_title("ViT rows on the GPU through the service; stars: the seed's final values")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, nargs="+",
                        help="gpu-pass-*.tar.gz files or unpacked folders, in order")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        result = build(unpack(args.results, Path(tmp)))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu-seed-table.json").write_text(json.dumps(result, indent=1) + "\n")
    md = markdown(result)
    (args.out / "gpu-seed-table.md").write_text(md)
    plot(result, args.out / "gpu-seed-curves.png")
    print(md)
    print(f"{result['rows_done']}/{len(result['rows'])} rows; written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
