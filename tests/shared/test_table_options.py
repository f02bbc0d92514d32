"""nn-experiments' table options: include, exclude, several sorts, and trials averaged.

The averaged numbers are worked out by hand below (a 2 x 3 trials grid), not by the code.
"""

from __future__ import annotations

import csv
import io

import pytest

from shared.results_table import TableRun
from shared.table_average import NotNumeric
from shared.table_options import TableOptionError, TableOptions, build, render

KEYS = ["lr", "trial"]


def _run(run_id: int, lr: float, trial: int, loss: float, acc: float, **extra) -> TableRun:  # type: ignore[no-untyped-def]
    metrics = {
        "validation_loss": (600, loss),
        "accuracy_argmax": (600, acc),
        "train_loss": (640, loss * 2),
        "model_params": (0, 100.0),
    }
    return TableRun(
        run_id=run_id, sweep_id=1, matrix_id=str(run_id), slug=f"lr:{lr}_trial:{trial}",
        status=extra.pop("status", "succeeded"), params={"lr": lr, "trial": trial},
        metrics=metrics, **extra,
    )  # fmt: skip


# lr 0.1: losses 0.30, 0.20, 0.40 -> mean 0.30; deviations -0.1, +0.1, 0 -> sample variance
#   (0.01 + 0.01 + 0) / 2 = 0.01 -> std 0.1. accuracies 0.80, 0.90, 0.85 -> mean 0.85, std 0.05.
# lr 0.01: losses 0.50, 0.60, 0.70 -> mean 0.60, std 0.1; accuracies 0.70, 0.70, 0.76 -> mean
#   0.72, deviations -0.02, -0.02, 0.04 -> variance (0.0004 + 0.0004 + 0.0016) / 2 = 0.0012
#   -> std 0.034641.
GRID = [
    _run(1, 0.1, 1, 0.30, 0.80),
    _run(2, 0.1, 2, 0.20, 0.90),
    _run(3, 0.1, 3, 0.40, 0.85),
    _run(4, 0.01, 1, 0.50, 0.70),
    _run(5, 0.01, 2, 0.60, 0.70),
    _run(6, 0.01, 3, 0.70, 0.76),
]
AVERAGED = TableOptions.of(average="trial", average_std=["accuracy_argmax", "validation loss"])


def _md(markdown: str) -> list[dict[str, str]]:
    header, _rule, *rows = [
        [cell.strip() for cell in line.strip("|").split(" | ")]
        for line in markdown.strip().splitlines()
    ]
    return [dict(zip(header, row, strict=True)) for row in rows]


def test_averaged_table_matches_numbers_worked_out_by_hand() -> None:
    table = build(GRID, KEYS, AVERAGED)
    document = render(table, "json", AVERAGED)
    assert isinstance(document, dict)
    first, second = document["rows"]
    assert first["params"] == {"lr": 0.1} and first["run_ids"] == [1, 2, 3] and first["n"] == 3
    loss = first["stats"]["validation loss (600 steps)"]
    assert loss["mean"] == pytest.approx(0.30) and loss["std"] == pytest.approx(0.1)
    assert loss["n"] == 3
    acc = first["stats"]["accuracy (argmax)"]
    assert (acc["mean"], acc["std"]) == (pytest.approx(0.85), pytest.approx(0.05))
    acc = second["stats"]["accuracy (argmax)"]
    assert (acc["mean"], acc["std"]) == (pytest.approx(0.72), pytest.approx(0.0346410, abs=1e-6))
    assert second["stats"]["validation loss (600 steps)"]["std"] == pytest.approx(0.1)
    assert document["average"] == "trial"
    assert "trial" not in [c["name"] for c in document["columns"]]

    rows = _md(render(table, "md", AVERAGED))  # type: ignore[arg-type]
    assert [r["lr"] for r in rows] == ["0.1", "0.01"]
    assert rows[0]["num trials"] == "3" and rows[0]["runs"] == "1,2,3"
    assert rows[0]["accuracy (argmax)"] == "**0.8500 ± 0.0500**"  # the best mean is bold
    assert rows[1]["accuracy (argmax)"] == "0.7200 ± 0.0346"
    assert rows[0]["validation loss (600 steps)"] == "**0.30000 ± 0.10000**"
    assert rows[0]["model params"] == "100"  # a mean only: not a std column


def test_averaged_csv_has_a_std_column_after_each_std_column() -> None:
    text = render(build(GRID, KEYS, AVERAGED), "csv", AVERAGED)
    rows = list(csv.DictReader(io.StringIO(text)))  # type: ignore[arg-type]
    assert float(rows[1]["accuracy (argmax)"]) == pytest.approx(0.72)
    assert float(rows[1]["accuracy (argmax) std"]) == pytest.approx(0.034641, abs=1e-6)
    assert rows[0]["num trials"] == "3" and rows[0]["runs"] == "1 2 3"
    assert "model params std" not in rows[0]


def test_unfinished_and_failed_runs_are_left_out_and_the_row_says_so() -> None:
    runs = [*GRID[:2], _run(3, 0.1, 3, 9.0, 0.1, status="failed"), *GRID[3:5]]
    runs.append(_run(6, 0.01, 3, 9.0, 0.1, status="running"))
    table = build(runs, KEYS, AVERAGED)
    document = render(table, "json", AVERAGED)
    first, second = document["rows"]  # type: ignore[index]
    assert first["n"] == 2 and first["left_out"] == {"failed": [3]}
    assert first["stats"]["validation loss (600 steps)"]["mean"] == pytest.approx(0.25)
    assert second["left_out"] == {"running": [6]}
    rows = _md(render(table, "md", AVERAGED))  # type: ignore[arg-type]
    assert rows[0]["left out"] == "1 failed (run 3)" and rows[0]["num trials"] == "2"


def test_one_run_has_no_std() -> None:
    options = TableOptions.of(average="trial", average_std=["accuracy_argmax"])
    table = build(GRID[:1], KEYS, options)
    (row,) = render(table, "json", options)["rows"]  # type: ignore[index]
    assert row["stats"]["accuracy (argmax)"] == {"mean": 0.8, "std": None, "n": 1}
    assert _md(render(table, "md", options))[0]["accuracy (argmax)"] == "**0.8000**"  # type: ignore[arg-type]


def test_several_sort_columns_the_first_decides_first() -> None:
    # By lr descending (trailing '-'), then by loss ascending within each lr.
    options = TableOptions.of(sort=["lr-", "validation loss"])
    rows = render(build(GRID, KEYS, options), "json", options)["rows"]  # type: ignore[index]
    assert [r["run_id"] for r in rows] == [2, 1, 3, 4, 5, 6]
    options = TableOptions.of(sort=["-accuracy_argmax", "trial"])
    rows = render(build(GRID, KEYS, options), "json", options)["rows"]  # type: ignore[index]
    assert [r["run_id"] for r in rows] == [2, 3, 1, 6, 4, 5]


def test_sort_by_part_of_a_header_as_the_original_does() -> None:
    options = TableOptions.of(sort=["-validation"])
    rows = render(build(GRID, KEYS, options), "json", options)["rows"]  # type: ignore[index]
    assert [r["run_id"] for r in rows] == [6, 5, 4, 3, 1, 2]


def test_include_a_stored_metric_and_exclude_columns() -> None:
    options = TableOptions.of(include=["train_loss"], exclude=["status", "throughput", "run"])
    text = render(build(GRID, KEYS, options), "md", options)
    rows = _md(text)  # type: ignore[arg-type]
    assert rows[0]["train_loss"] == "0.60000"
    assert "status" not in rows[0] and "throughput" not in rows[0] and "run" not in rows[0]
    document = render(build(GRID, KEYS, options), "json", options)
    assert "status" not in document["rows"][0]["values"]  # type: ignore[index]
    assert document["options"]["include"] == ["train_loss"]  # type: ignore[index]


@pytest.mark.parametrize(
    ("options", "fragments"),
    [
        (TableOptions.of(include=["no_such_metric"]), ["include 'no_such_metric'", "train_loss"]),
        (TableOptions.of(exclude=["nope"]), ["exclude 'nope'", "'accuracy (svc)'"]),
        (TableOptions.of(sort=["-nope"]), ["sort by 'nope'"]),
        (TableOptions.of(average="seed"), ["average over 'seed'", "lr, trial"]),
        (TableOptions.of(average_std=["accuracy_svc"]), ["needs --average-column"]),
        (TableOptions.of(average="trial", average_std=["nope"]), ["std of 'nope'"]),
    ],
)
def test_bad_options_name_the_value(options: TableOptions, fragments: list[str]) -> None:
    with pytest.raises(TableOptionError) as caught:
        build(GRID, KEYS, options)
    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_a_std_column_must_be_numeric() -> None:
    with pytest.raises(NotNumeric, match="std of 'lr': it is not a numeric"):
        build(GRID, KEYS, TableOptions.of(average="trial", average_std=["lr"]))


def test_only_a_sort_column_may_be_part_of_a_header() -> None:
    with pytest.raises(TableOptionError, match="cannot exclude 'accuracy'"):
        build(GRID, KEYS, TableOptions.of(exclude=["accuracy"]))
