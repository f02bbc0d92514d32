"""Issue 21 against a live `sweeps up`: a 2 x 2 trials grid trained by a real worker, then the
table options, the report, the trained model pulled and rebuilt, and the TensorBoard export.

Tests run in file order against one stack (the first one trains the sweep).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.conftest import TINY_SWEEP, Stack, wait_for
from tests.cli.test_stack import api_get, assert_one_error_line, run_statuses, sweep_id_of

pytestmark = pytest.mark.slow

# The tiny sweep with two trials per configuration, each trial its own seed.
GRID = (
    TINY_SWEEP.read_text()
    .replace("hidden: [4, 8]", "hidden: [4, 8]\n  trial: [1, 2]")
    .replace("seed: 1", "seed: ${trial}")
)


@pytest.fixture(scope="module")
def grid(stack: Stack) -> int:
    path = stack.cwd / "grid.yaml"
    path.write_text(GRID)
    submitted = stack.run("submit", str(path))
    assert submitted.returncode == 0, submitted.stderr
    sweep_id = sweep_id_of(submitted.stdout)
    wait_for(lambda: run_statuses(stack, sweep_id) == ["succeeded"] * 4, 240, "the grid to train")
    return sweep_id


def test_table_averaged_over_trials(stack: Stack, grid: int) -> None:
    result = stack.run(
        "table", str(grid), "-ac", "trial", "-acs", "accuracy_argmax", "-acs", "validation loss",
        "-sc", "-hidden", "-ic", "train_loss", "-ec", "throughput",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    header, _rule, *rows = result.stdout.strip().splitlines()
    names = [cell.strip() for cell in header.strip("|").split(" | ")]
    assert names[:3] == ["runs", "hidden", "num trials"] and "train_loss" in names
    assert "throughput" not in names and "trial" not in names
    cells = [dict(zip(names, (c.strip() for c in row.strip("|").split(" | ")), strict=True))
             for row in rows]  # fmt: skip
    assert [c["hidden"] for c in cells] == ["8", "4"] and cells[0]["num trials"] == "2"
    assert " ± " in cells[0]["accuracy (argmax)"].strip("*")
    data = json.loads(stack.run("table", str(grid), "-f", "json", "-ac", "trial").stdout)
    assert all(row["n"] == 2 and row["stats"]["accuracy (argmax)"]["std"] is not None
               for row in data["rows"])  # fmt: skip


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["-ac", "seed"], "cannot average over 'seed': it is not a matrix key"),
        (["-ic", "no_such_metric"], "cannot include 'no_such_metric'"),
        (["-ac", "trial", "-acs", "hidden"], "std of 'hidden'"),
    ],
)
def test_bad_table_options_are_one_line(
    stack: Stack, grid: int, args: list[str], fragment: str
) -> None:
    assert_one_error_line(stack.run("table", str(grid), *args), fragment)


def _png_lines(path: Path) -> list[str]:
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (800, 450)
        return list(json.loads(image.text["Lines"]))


def test_report_with_plots(stack: Stack, grid: int, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = stack.run("report", str(grid), "--out", str(out))
    assert result.returncode == 0, result.stderr
    text = (out / "report.md").read_text()
    assert "## Results" in text and "| run |" in text and "hidden: [4, 8]" in text
    assert "![validation loss](plots/validation_loss.png)" in text
    slugs = [r["slug"] for r in api_get(stack, f"/sweeps/{grid}")["runs"]]
    for name in ("validation_loss", "accuracy_argmax", "accuracy_svc"):
        assert _png_lines(out / "plots" / f"{name}.png") == slugs  # one line per run

    refused = stack.run("report", str(grid), "--out", str(out), "-ac", "trial")
    assert_one_error_line(refused, f"{out} exists and is not empty", "--force")
    again = stack.run("report", str(grid), "--out", str(out), "--force", "-ac", "trial",
                      "-acs", "validation_loss")  # fmt: skip
    assert again.returncode == 0, again.stderr
    lines = _png_lines(out / "plots" / "validation_loss.png")
    assert lines == ["hidden:4 (n=2)", "hidden:8 (n=2)"]  # one line per configuration
    assert "num trials" in (out / "report.md").read_text()


def test_pull_rebuilds_the_workers_model(stack: Stack, grid: int, tmp_path: Path) -> None:
    import torch

    from worker.engine import load_model
    from worker.engine.build import build_model

    run = api_get(stack, f"/sweeps/{grid}")["runs"][1]
    target = tmp_path / "model.pt"
    result = stack.run("pull", str(run["id"]), "--out", str(target))
    assert result.returncode == 0, result.stderr
    model = load_model(target)

    # The worker's own final checkpoint, read straight from the artifact store.
    latest = torch.load(
        stack.cwd / ".sweeps" / "artifacts" / "runs" / str(run["id"]) / "latest.pt",
        weights_only=False,
    )
    worker_model, _ = build_model(_config(stack, run["id"]))
    worker_model.load_state_dict(latest["model"])
    worker_model.eval()
    fixed = torch.linspace(0, 1, 3 * 16).reshape(3, 1, 4, 4)
    with torch.no_grad():
        assert torch.equal(model(fixed), worker_model(fixed))
        untrained, _ = build_model(_config(stack, run["id"]))
        assert not torch.equal(model(fixed), untrained(fixed))

    assert_one_error_line(stack.run("pull", str(run["id"]), "--out", str(target)), "--force")
    assert_one_error_line(stack.run("pull", "99999"), "404", "run 99999 does not exist")


def _config(stack: Stack, run_id: int) -> dict:
    return dict(api_get(stack, f"/runs/{run_id}")["config"])


def test_export_for_tensorboard(stack: Stack, grid: int, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "tb"
    result = stack.run("export", str(grid), "--tensorboard", str(out))
    assert result.returncode == 0, result.stderr
    for run in api_get(stack, f"/sweeps/{grid}")["runs"]:
        folder = out / run["experiment_name"]
        events = EventAccumulator(str(folder))
        events.Reload()
        stored = api_get(stack, f"/runs/{run['id']}/metrics")["series"]
        assert set(events.Tags()["scalars"]) == {k for k, v in stored.items() if v}
        read = [(e.step, e.value) for e in events.Scalars("validation_loss")]
        expected = stored["validation_loss"]
        assert [s for s, _ in read] == [s for s, _ in expected]
        assert [v for _, v in read] == pytest.approx([v for _, v in expected], rel=1e-6)
    refused = stack.run("export", str(grid), "--tensorboard", str(out))
    assert_one_error_line(refused, "event files already", "--force")
