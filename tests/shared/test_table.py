"""The comparison table renders like the seed's: separators, right alignment, best in bold."""

from __future__ import annotations

import csv
import io

import pytest

from shared.results_table import TableRun, UnknownColumn, build_table, to_csv, to_json, to_markdown

KEYS = ["patch", "layer", "head", "hidden", "mlp", "drop", "cs"]


def _run(run_id: int, params: list, loss: float, argmax: float, svc: float, n_params: int,
         steps: int = 2_000_000, **extra) -> TableRun:  # fmt: skip
    metrics = {
        "validation_loss": (steps, loss),
        "accuracy_argmax": (steps, argmax),
        "accuracy_svc": (steps, svc),
        "model_params": (0, float(n_params)),
    }
    return TableRun(
        run_id=run_id, sweep_id=extra.pop("sweep_id", 1), matrix_id=str(run_id), slug="s",
        status=extra.pop("status", "succeeded"), params=dict(zip(KEYS, params, strict=True)),
        metrics=metrics, **extra,
    )  # fmt: skip


# Four rows of the seed's table (vision-transformers write-up).
SEED = [
    _run(1, [7, 4, 16, 256, 512, 0.0, 128], 0.01429, 0.9063, 0.9076, 2_185_610),
    _run(2, [7, 8, 16, 256, 512, 0.0, 784], 0.01518, 0.8993, 0.9009, 4_469_178),
    _run(3, [7, 16, 8, 256, 512, 0.0, 128], 0.01897, 0.8665, 0.8728, 8_510_858, steps=780_000),
    _run(4, [7, 8, 12, 768, 512, 0.0, 128], 0.02125, 0.8477, 0.8502, 25_453_962),
]


def _md_rows(markdown: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip("|").split(" | ")]
        for line in markdown.strip().splitlines()
    ]


def test_markdown_matches_the_seed_layout() -> None:
    markdown = to_markdown(build_table(SEED, KEYS))
    header, rule, *rows = _md_rows(markdown)
    assert header == ["run", "status", *KEYS, "validation loss (2,000,000 steps)",
                      "accuracy (argmax)", "accuracy (svc)", "accuracy (svc held-out)",
                      "model params", "train time", "throughput"]  # fmt: skip
    alignment = markdown.splitlines()[1].strip("|").split("|")
    assert alignment[0] == "---:" and alignment[1] == ":---"  # run id right, status left
    assert all(a == "---:" for a in alignment[2:])  # parameters and metrics are numbers
    first = dict(zip(header, rows[0], strict=True))
    assert first["validation loss (2,000,000 steps)"] == "**0.01429**"
    assert first["accuracy (argmax)"] == "**0.9063**"
    assert first["accuracy (svc)"] == "**0.9076**"
    assert first["model params"] == "2,185,610"  # no best for a size
    assert first["drop"] == "0.0"
    green = dict(zip(header, rows[2], strict=True))
    assert green["validation loss (2,000,000 steps)"] == "(780,000 steps) 0.01897"
    assert dict(zip(header, rows[3], strict=True))["model params"] == "25,453,962"
    assert markdown.count("**") == 6  # exactly three bold cells


def test_ties_are_all_bold_and_missing_values_blank() -> None:
    runs = [
        _run(1, [7] * 7, 0.5, 0.9, 0.8, 10),
        _run(2, [7] * 7, 0.5, 0.7, 0.8, 10),
        TableRun(3, 1, "3", "s", "queued", dict(zip(KEYS, [7] * 7, strict=True)), {}),
    ]
    table = build_table(runs, KEYS)
    assert [r.best for r in table.rows][:2] == [
        ("validation loss (2,000,000 steps)", "accuracy (argmax)", "accuracy (svc)"),
        ("validation loss (2,000,000 steps)", "accuracy (svc)"),
    ]
    assert table.rows[2].best == ()
    last = _md_rows(to_markdown(table))[-1]
    assert last[:2] == ["3", "queued"] and last[-7:] == [""] * 7


def test_sort_by_any_column_and_unknown_column_is_refused() -> None:
    by_loss = build_table(list(reversed(SEED)), KEYS, sort="validation loss")
    assert [r.run.run_id for r in by_loss.rows] == [1, 2, 3, 4]
    by_acc = build_table(SEED, KEYS, sort="-accuracy (svc)")
    assert [r.run.run_id for r in by_acc.rows] == [1, 2, 3, 4]
    by_layer = build_table(SEED, KEYS, sort="-layer")
    assert [r.run.run_id for r in by_layer.rows][0] == 3
    by_key = build_table(SEED, KEYS, sort="model_params")
    assert [r.run.run_id for r in by_key.rows] == [1, 2, 3, 4]
    with pytest.raises(UnknownColumn, match=r"cannot sort by 'id; DROP TABLE runs'.*'layer'"):
        build_table(SEED, KEYS, sort="id; DROP TABLE runs")


def test_csv_is_raw_numbers_and_json_carries_cells_and_best() -> None:
    runs = [*SEED[:2], _run(9, [7] * 7, 0.1, 0.95, 0.96, 1_000, sweep_id=2,
                            train_seconds=3723.0, reused_from_id=1, status="reused")]  # fmt: skip
    table = build_table(runs, KEYS)
    records = list(csv.DictReader(io.StringIO(to_csv(table))))
    assert records[0]["model params"] == "2185610"
    assert records[0]["validation inputs"] == "2000000"
    assert records[2]["sweep"] == "2" and records[2]["train time"] == "3723.0"
    data = to_json(table)
    names = [c["name"] for c in data["columns"]]
    assert names[:3] == ["run", "sweep", "status"]  # two sweeps: the sweep column appears
    reused = data["rows"][2]
    assert reused["reused_from_id"] == 1 and reused["status"] == "reused"
    assert reused["cells"]["train time"] == "1h 02m 03s"
    assert reused["values"]["model params"] == 1000
    assert "accuracy (argmax)" in reused["best"]
    assert {c["name"]: c["align"] for c in data["columns"]}["status"] == "left"


def test_matrix_key_named_like_a_fixed_column_stays_distinct() -> None:
    run = TableRun(1, 1, "1", "s", "succeeded", {"status": "x", "lr": 0.1}, {})
    table = build_table([run], ["status", "lr"])
    assert [c.name for c in table.columns][:4] == ["run", "status", "status (param)", "lr"]
    assert table.rows[0].values["status (param)"] == "x"
