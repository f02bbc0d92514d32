"""`search` and ranges in the sweep file (shared/sweepfile/search.py): parsing, rules, preview."""

from __future__ import annotations

import pytest

from shared.sweepfile import SpecError, parse_sweep
from shared.sweepfile.search import Choice, Range, Search, number_text
from tests.api.conftest import TINY_YAML

HEAD = """\
search:
  method: random
  trials: 10
  metric: validation_loss
matrix:
  lr: {low: 1.0e-4, high: 1.0e-2, log: true}
  width: {low: 8, high: 64, step: 8}
  act: [relu, gelu]
"""
BODY = TINY_YAML.split("experiment_name:", 1)[1].replace("${lr}", "${lr}")
TEXT = HEAD + "experiment_name:" + BODY.replace("nn.Linear(4, 2)", "nn.Linear(4, ${width})")


def parse(text: str = TEXT) -> Search:
    spec = parse_sweep(text)
    assert spec.search is not None
    return spec.search


def test_a_search_parses_to_typed_ranges_and_choices_described_in_one_line() -> None:
    search = parse()
    assert search.space == {
        "lr": Range(1e-4, 1e-2, log=True),
        "width": Range(8, 64, step=8, integer=True),
        "act": Choice(("relu", "gelu")),
    }
    assert (search.mode, search.in_flight, search.seed) == ("min", 4, 0)
    assert search.describe() == (
        "random, 10 trials over lr ∈ [1e-4, 1e-2] log, width ∈ [8, 64] step 8, act ∈ {relu, gelu}"
    )
    assert Search.from_json(search.to_json()) == search


def test_a_sampled_sweep_has_no_runs_up_front_but_validated_probes() -> None:
    spec = parse_sweep(TEXT)
    assert spec.runs == [] and spec.matrix_keys == ["lr", "width", "act"]
    lows, highs = spec.probes[0].params, spec.probes[1].params
    assert lows == {"lr": 1e-4, "width": 8, "act": "relu"}
    assert highs == {"lr": 1e-2, "width": 64, "act": "gelu"}
    assert all(p.params["width"] % 8 == 0 for p in spec.probes)


def test_grid_with_search_takes_the_first_trials_entries_in_order() -> None:
    grid = "search: {trials: 3}\nmatrix:\n  lr: [0.1, 0.01, 0.001, 0.0001]\n"
    text = TINY_YAML.replace("matrix:\n  lr: [0.1, 0.01]\n", grid)
    spec = parse_sweep(text)
    assert spec.search is not None and spec.search.trials == 3
    assert [r.params["lr"] for r in spec.runs] == [0.1, 0.01, 0.001]
    # The same config hash as without `search`: a trial reuses a grid run with its values.
    plain = parse_sweep(TINY_YAML)
    assert spec.runs[0].config_hash == plain.runs[0].config_hash


@pytest.mark.parametrize(
    ("old", "new", "key", "message"),
    [
        ("  trials: 10\n", "  trials: 10\n  in_flight: 0\n", "search.in_flight", ">= 1"),
        ("  trials: 10\n", "  trials: 10\n  budget: 3\n", "search.budget", "unknown key"),
        ("  trials: 10\n", "", "search.trials", "is required"),
        ("high: 64, step: 8", "high: 64, step: -8", "matrix.width.step", "positive"),
        ("high: 1.0e-2, log: true", "high: 1.0e-2, log: true, step: 0.001",
         "matrix.lr.step", "log"),
        ("low: 8, high: 64", "low: x, high: 64", "matrix.width.low", "a number"),
        ("metric: validation_loss", "metric: validation_loss\n  mode: best", "search.mode",
         "min or max"),
    ],
)  # fmt: skip
def test_bad_search_values_name_their_key_and_line(
    old: str, new: str, key: str, message: str
) -> None:
    assert old in TEXT
    with pytest.raises(SpecError) as raised:
        parse_sweep(TEXT.replace(old, new))
    assert raised.value.key == key and message in raised.value.message
    assert raised.value.line is not None


def test_a_range_without_search_is_refused_and_a_map_without_bounds_keeps_its_old_error() -> None:
    with pytest.raises(SpecError, match="'lr' is a range, and there is no 'search'") as raised:
        parse_sweep(TINY_YAML.replace("lr: [0.1, 0.01]", "lr: {low: 0.01, high: 0.1}"))
    assert raised.value.line == 2
    with pytest.raises(SpecError, match="must be a list"):
        parse_sweep(TINY_YAML.replace("lr: [0.1, 0.01]", "lr: {x: 1}"))


def test_numbers_are_written_in_their_shorter_form() -> None:
    assert [number_text(v) for v in (1e-4, 1e-2, 0.5, 3e-4, 0.1, 64, 2.0, 1.5e-3)] == [
        "1e-4", "1e-2", "0.5", "3e-4", "0.1", "64", "2", "1.5e-3",
    ]  # fmt: skip
    assert Range(1e-4, 1e-2, log=True).clean(0.00012345678) == 0.000123457
    assert Range(1e-4, 1e-2).clean(0.0100000004) == 1e-2  # rounded, kept inside the range
