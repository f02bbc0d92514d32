"""`sweeps status N` and `sweeps preview` for a sweep with `search`: the one-line summary."""

from __future__ import annotations

from rich.console import Console

from cli.render import print_preview, print_sweep


def test_status_of_a_search_says_what_is_searched_how_far_and_the_best() -> None:
    console = Console(record=True, width=200)
    sweep = {
        "id": 3, "name": "s", "status": "active", "counts": {"succeeded": 2, "running": 1},
        "runs": [],
        "search": {
            "description": "tpe, 8 trials over lr ∈ [1e-4, 1e-2] log", "started": 3,
            "trials": 8, "metric": "validation_loss", "best_value": 0.86891, "best_run_id": 12,
        },
    }  # fmt: skip
    print_sweep(console, sweep)
    text = console.export_text()
    assert "search: tpe, 8 trials over lr ∈ [1e-4, 1e-2] log; 3 of 8 trials started; " in text
    assert "best validation_loss 0.86891 (run 12)" in text


def test_preview_of_a_search_names_it_above_its_first_trials() -> None:
    console = Console(record=True, width=200)
    run = {"matrix_id": "1", "slug": "lr:0.001", "params": {"lr": 0.001},
           "experiment_name": "x/lr:0.001", "config_hash": "ab" * 32}  # fmt: skip
    print_preview(console, [run], search="random, 4 trials over lr ∈ [1e-4, 1e-2] log")
    lines = [line.rstrip() for line in console.export_text().splitlines()]
    assert lines[0] == "search: random, 4 trials over lr ∈ [1e-4, 1e-2] log"
    assert lines[1] == "its first 1 sampled trial(s)"
