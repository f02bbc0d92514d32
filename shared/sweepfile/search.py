"""`search`: sample the matrix (random, TPE) instead of enumerating it; ranges as matrix values.

This module is the format only: the typed `Search`, its rules, the points that validate a file
at submit, and the one-line description preview shows. Asking the sampler for trials lives in
shared/domain/search.py (Optuna is imported there, never here, so parsing stays light).

`$filter` with random or TPE is applied by rejection: a sampled point the filter refuses is
dropped and another one asked, at most `MAX_REJECTIONS` times per trial. A filter that keeps
none of `FILTER_PROBES` random points, or that names `${matrix_id}` (a trial's id is given
after sampling), is refused at submit.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from . import names
from .errors import SpecError
from .matrix import (
    FILTER_KEY,
    PLACEHOLDER,
    RESERVED,
    MatrixEntry,
    check_matrix,
    check_names,
    keeps,
    make_slug,
)

METHODS = ("grid", "random", "tpe")
KEYS = {
    "method": "grid (default), random or tpe",
    "trials": "runs to start in all",
    "metric": "what the sampler learns from",
    "mode": "min or max (default: min for losses, max otherwise)",
    "in_flight": "runs queued or running at once (default 4)",
    "seed": "the sampler's own seed (default 0)",
}
RANGE_KEYS = ("low", "high", "log", "step")
DEFAULT_IN_FLIGHT = 4
MAX_REJECTIONS = 100
FILTER_PROBES = 256
PROBE_RUNS = 4  # points whose runs are built and validated at submit
SIGNIFICANT_DIGITS = 6  # sampled floats are rounded to this: readable ids, dedup can happen


@dataclass(frozen=True)
class Range:
    """A numeric range: floats, or integers when low, high (and step) are integers."""

    low: float
    high: float
    log: bool = False
    step: float | None = None
    integer: bool = False

    def describe(self) -> str:
        text = f"[{number_text(self.low)}, {number_text(self.high)}]"
        if self.log:
            text += " log"
        if self.step is not None and not (self.integer and self.step == 1):
            text += f" step {number_text(self.step)}"
        return text

    def clean(self, value: float) -> float | int:
        """A sampled value as it is stored: an int, or a float rounded and kept in range."""
        if self.integer:
            return int(value)
        rounded = float(f"{value:.{SIGNIFICANT_DIGITS}g}")
        return min(max(rounded, self.low), self.high)

    def draw(self, rng: random.Random) -> float | int:
        if self.log:
            value = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        else:
            value = rng.uniform(self.low, self.high)
        if self.step is not None:
            value = self.low + round((value - self.low) / self.step) * self.step
            value = min(value, self.high)
        return self.clean(round(value) if self.integer else value)


@dataclass(frozen=True)
class Choice:
    values: tuple[Any, ...]

    def describe(self) -> str:
        return "{" + ", ".join(_value_text(v) for v in self.values) + "}"


Param = Range | Choice


@dataclass(frozen=True)
class Search:
    method: str
    trials: int
    metric: str | None
    mode: str
    in_flight: int
    seed: int
    space: dict[str, Param]  # the matrix keys, in the file's order
    filter: str | None = None

    @property
    def samples(self) -> bool:
        """random or tpe (grid enumerates the matrix in order)."""
        return self.method != "grid"

    def describe(self) -> str:
        """'tpe, 40 trials over lr ∈ [1e-4, 1e-2] log, ch ∈ {8, 16, 32}'."""
        over = ", ".join(f"{key} ∈ {param.describe()}" for key, param in self.space.items())
        text = f"{self.method}, {self.trials} trials"
        return f"{text} over {over}" if over else text

    def entry(self, number: int, params: dict[str, Any]) -> MatrixEntry:
        """Trial `number` (1-based) as a matrix entry: its id is the trial number."""
        return MatrixEntry(
            matrix_id=str(number).zfill(len(str(self.trials))),
            slug=make_slug(params),
            params=params,
        )

    def keeps(self, entry: MatrixEntry) -> bool:
        return self.filter is None or keeps(self.filter, entry)

    def to_json(self) -> dict[str, Any]:
        space = {
            key: {"choice": list(p.values)} if isinstance(p, Choice) else {"range": vars(p)}
            for key, p in self.space.items()
        }
        return {**{k: getattr(self, k) for k in (*KEYS, "filter")}, "space": space}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Search:
        space: dict[str, Param] = {
            key: Choice(tuple(p["choice"])) if "choice" in p else Range(**p["range"])
            for key, p in data["space"].items()
        }
        return cls(**{k: data[k] for k in (*KEYS, "filter")}, space=space)


def number_text(value: float) -> str:
    """The shorter of 0.01 and 1e-2 (the exponent form on a tie); integers as they are."""
    if isinstance(value, int) or (value == int(value) and abs(value) < 1e5):
        return str(int(value))
    plain = f"{value:g}"
    mantissa, exponent = f"{value:e}".split("e")
    short = f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    return short if len(short) <= len(plain) else plain


def _value_text(value: Any) -> str:
    return number_text(value) if isinstance(value, float) else str(value)


def is_range(value: Any) -> bool:
    """A map with a bound (any other map is a mistake the matrix rules name)."""
    return isinstance(value, dict) and ("low" in value or "high" in value)


def parse_search(document: dict[str, Any]) -> Search | None:
    """The file's search, or None without `search`. SpecError (with its key) for bad input."""
    matrix = document.get("matrix") or {}
    value = document.get("search")
    ranges = [k for k, v in matrix.items() if k != FILTER_KEY and is_range(v)] if isinstance(
        matrix, dict) else []  # fmt: skip
    if value is None:
        if ranges:
            raise _range_needs_sampler(ranges[0], "there is no 'search'")
        return None
    if not isinstance(value, dict):
        raise SpecError(
            f"'search' must be a map ({', '.join(KEYS)}), not {type(value).__name__}", key="search"
        )
    for key in value:
        if key not in KEYS:
            raise SpecError(
                f"unknown key 'search.{key}'; search takes {', '.join(KEYS)}", key=f"search.{key}"
            )
    method = value.get("method", "grid")
    if method not in METHODS:
        raise SpecError(
            f"'search.method' {method!r} is not one of {', '.join(METHODS)}",
            key="search.method",
            value=method,
        )
    if method == "grid" and ranges:
        raise _range_needs_sampler(ranges[0], "search.method is grid")
    if not isinstance(matrix, dict) or not isinstance(matrix.get(FILTER_KEY, ""), str):
        check_matrix(matrix)  # raises: says what a matrix must be
    space = {k: _param(k, v) for k, v in matrix.items() if k != FILTER_KEY}
    filter_text = matrix.get(FILTER_KEY)
    metric, mode = _metric(value, document, required=method != "grid")
    search = Search(
        method=method,
        # grid without `trials`: every combination (parse.py counts them); 0 until then
        trials=_integer(value, "trials", default=None)
        if "trials" in value or method != "grid"
        else 0,
        metric=metric,
        mode=mode,
        in_flight=_integer(value, "in_flight", default=DEFAULT_IN_FLIGHT),
        seed=_integer(value, "seed", default=0, minimum=0),
        space=space,
        filter=filter_text if isinstance(filter_text, str) else None,
    )
    if search.samples and search.filter is not None:
        _check_filter(search)
    return search


def _range_needs_sampler(key: str, why: str) -> SpecError:
    return SpecError(
        f"'{key}' is a range, and {why}: a range is sampled, so it needs "
        "'search: {method: random}' or tpe (grid enumerates lists)",
        key=f"matrix.{key}",
    )


def _metric(
    value: dict[str, Any], document: dict[str, Any], *, required: bool
) -> tuple[str | None, str]:
    metric = value.get("metric")
    if metric is None and not required:
        return None, "max"
    trainer = document.get("trainer") or "Trainer"
    # A plugin's trainer is known only to the workers: what every trainer reports is allowed.
    reported = names.TRAINER_REPORTS.get(str(trainer), names.BASE_REPORTS)
    if not isinstance(metric, str) or metric not in reported:
        raise SpecError(
            f"'search.metric' {metric!r} is not a metric the trainer {trainer} reports; "
            f"choose one of {', '.join(reported)}",
            key="search.metric",
            value=metric,
        )
    mode = value.get("mode", "min" if "loss" in metric else "max")
    if mode not in ("min", "max"):
        raise SpecError(f"'search.mode' must be min or max, got {mode!r}", key="search.mode")
    return metric, mode


def _integer(value: dict[str, Any], key: str, *, default: int | None, minimum: int = 1) -> int:
    number = value.get(key, default)
    if isinstance(number, bool) or not isinstance(number, int) or number < minimum:
        need = "is required with random and tpe: " if key not in value and default is None else ""
        raise SpecError(
            f"'search.{key}' {need}must be an integer >= {minimum}, got {number!r}",
            key=f"search.{key}",
            value=number,
        )
    return number


def _param(key: Any, value: Any) -> Param:
    if not isinstance(key, str) or not key or key in RESERVED:
        check_matrix({key: []})  # raises: names what a matrix key may be
    if isinstance(value, list):
        if not value:
            raise SpecError(f"matrix value for '{key}' is an empty list", key=f"matrix.{key}")
        return Choice(tuple(value))
    if not isinstance(value, dict):
        raise SpecError(
            f"matrix value for '{key}' must be a list or a range {{low, high}}, e.g. "
            f"{key}: [{value!r}]",
            key=f"matrix.{key}",
            value=value,
        )
    return _range(key, value)


def _range(key: str, value: dict[str, Any]) -> Range:
    where = f"matrix.{key}"
    for name in value:
        if name not in RANGE_KEYS:
            raise SpecError(
                f"unknown key '{name}' in the range '{key}'; a range takes {', '.join(RANGE_KEYS)}",
                key=f"{where}.{name}",
            )
    bounds = {}
    for name in ("low", "high", "step"):
        number = value.get(name)
        if name == "step" and number is None:
            continue
        if (
            isinstance(number, bool)
            or not isinstance(number, int | float)
            or not math.isfinite(number)
        ):
            raise SpecError(
                f"'{where}.{name}' must be a number, got {number!r}", key=f"{where}.{name}",
                value=number,
            )  # fmt: skip
        bounds[name] = number
    low, high, step = bounds["low"], bounds["high"], bounds.get("step")
    log = value.get("log", False)
    if not isinstance(log, bool):
        raise SpecError(f"'{where}.log' must be true or false", key=f"{where}.log", value=log)
    if low >= high:
        raise SpecError(
            f"the range '{key}' needs low < high, got low {low!r} and high {high!r}",
            key=f"{where}.low",
            value=low,
        )
    if log and low <= 0:
        raise SpecError(
            f"the range '{key}' is log: its bounds must be positive, got low {low!r}",
            key=f"{where}.low",
            value=low,
        )
    integer = all(isinstance(v, int) for v in bounds.values())
    if step is not None and (step <= 0 or (log and not (integer and step == 1))):
        raise SpecError(
            f"'{where}.step' must be positive, and cannot be combined with log, got {step!r}",
            key=f"{where}.step",
            value=step,
        )
    if integer:
        step = step or 1
    return Range(low=low, high=high, log=log, step=step, integer=integer)


def _check_filter(search: Search) -> None:
    assert search.filter is not None
    if any(m.group(1).strip() == "matrix_id" for m in PLACEHOLDER.finditer(search.filter)):
        raise SpecError(
            "$filter cannot use ${matrix_id} with random or tpe: a trial's id is given after "
            "it is sampled",
            key=FILTER_KEY,
        )
    check_names(search.filter, [*search.space, "matrix_slug"], what="$filter")
    if not probe_points(search):
        raise SpecError(
            f"$filter keeps none of {FILTER_PROBES} random points of the search space: "
            "it cannot be sampled (a filter is applied by rejection)",
            key=FILTER_KEY,
        )


def probe_points(search: Search) -> list[dict[str, Any]]:
    """Points to build and validate at submit: the lows, the highs, then random ones; only
    those `$filter` keeps, at most PROBE_RUNS."""
    lows = {k: p.values[0] if isinstance(p, Choice) else p.clean(p.low) for k, p in
            search.space.items()}  # fmt: skip
    highs = {k: p.values[-1] if isinstance(p, Choice) else p.clean(p.high) for k, p in
             search.space.items()}  # fmt: skip
    rng = random.Random(search.seed)
    points = [lows, highs]
    for _ in range(FILTER_PROBES):
        points.append(
            {k: rng.choice(p.values) if isinstance(p, Choice) else p.draw(rng)
             for k, p in search.space.items()}
        )  # fmt: skip
    kept: list[dict[str, Any]] = []
    for params in points:
        if search.keeps(search.entry(len(kept) + 1, params)) and params not in kept:
            kept.append(params)
            if len(kept) == PROBE_RUNS:
                break
    return kept
