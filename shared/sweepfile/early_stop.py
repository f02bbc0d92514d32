"""`early_stop`: asynchronous successive halving (ASHA), its typed settings and its rule.

The rule is written here rather than taken from Optuna's SuccessiveHalvingPruner. It is ten
lines; Optuna would be a heavy dependency for the API (which validates the key) and the
worker, and its pruners read a Study: sharing our database is ruled out (Optuna's RDB storage
stamps its schema in `alembic_version`, the table our migrations use), so each decision would
rebuild an in-memory study from our stored metrics, and Optuna's SH pruner also keeps its rung
bookkeeping in trial attributes, which we would have to fake. The promotion rule below is the
same as Optuna's (`_is_trial_promotable_to_next_rung`), including its answer for the first
runs to reach a rung.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..metric_keys import VALIDATION_LOSS
from . import names
from .errors import SpecError

KEYS = {
    "metric": "the validation metric to compare at each rung",
    "mode": "min or max (default: min for losses, max for accuracies)",
    "min_inputs": "the first rung, in training inputs",
    "reduction_factor": "keep the best 1/reduction_factor at each rung (default 3)",
}
DEFAULT_REDUCTION_FACTOR = 3


@dataclass(frozen=True)
class EarlyStop:
    metric: str
    mode: str  # "min" or "max"
    min_inputs: int
    reduction_factor: int

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> EarlyStop | None:
        """The run's early stopping, or None; raises SpecError naming a bad value."""
        value = config.get("early_stop")
        if value is None:
            return None
        return _parse(value, trainer=str(config.get("trainer") or "Trainer"), config=config)

    def rung_inputs(self, rung: int) -> int:
        return self.min_inputs * self.reduction_factor**rung

    def rung_of(self, step: int) -> int | None:
        """The highest rung `step` has reached (0 is the first), or None before the first."""
        if step < self.min_inputs:
            return None
        rung = 0
        while self.rung_inputs(rung + 1) <= step:
            rung += 1
        return rung

    def promotes(self, value: float, competing: list[float]) -> bool:
        """Whether `value` (included in `competing`) is in the top 1/reduction_factor.

        As in ASHA, when fewer than reduction_factor runs have reached the rung the run goes
        on only if it is the best so far; the first run to reach a rung always goes on.
        """
        worst = math.inf if self.mode == "min" else -math.inf
        ordered = sorted(worst if math.isnan(v) else v for v in competing)
        value = worst if math.isnan(value) else value
        index = max(len(ordered) // self.reduction_factor - 1, 0)
        if self.mode == "max":
            return value >= ordered[-(index + 1)] and value != worst
        return value <= ordered[index] and value != worst


def check_early_stop(config: dict[str, Any]) -> None:
    """SpecError for a bad `early_stop` (key `early_stop.<name>` so the line can be found)."""
    EarlyStop.from_config(config)


def _parse(value: Any, *, trainer: str, config: dict[str, Any]) -> EarlyStop:
    if not isinstance(value, dict):
        raise SpecError(
            "'early_stop' must be a map with metric, min_inputs and optionally mode and "
            f"reduction_factor, not {type(value).__name__}",
            key="early_stop",
        )
    for key in value:
        if key not in KEYS:
            raise SpecError(
                f"unknown key 'early_stop.{key}'; early_stop takes {', '.join(KEYS)}",
                key=f"early_stop.{key}",
            )
    metric = value.get("metric")
    # A plugin's trainer is known only to the workers: the loss is what every trainer reports.
    reported = names.TRAINER_METRICS.get(trainer, (VALIDATION_LOSS,))
    if not isinstance(metric, str) or metric not in reported:
        later = " (the SVC scores arrive after the validation, too late to decide on)"
        raise SpecError(
            f"'early_stop.metric' {metric!r} is not a metric the trainer {trainer} reports at "
            f"each validation; choose one of {', '.join(reported)}"
            + (later if isinstance(metric, str) and "svc" in metric else ""),
            key="early_stop.metric",
            value=metric,
        )
    mode = value.get("mode", "min" if "loss" in metric else "max")
    if mode not in ("min", "max"):
        raise SpecError(
            f"'early_stop.mode' must be min or max, got {mode!r}", key="early_stop.mode"
        )
    min_inputs = _integer(value, "min_inputs", minimum=1, required=True) or 0
    factor = _integer(value, "reduction_factor", minimum=2, required=False)
    max_inputs = config.get("max_inputs")
    if (
        isinstance(max_inputs, int)
        and not isinstance(max_inputs, bool)
        and (min_inputs >= max_inputs)
    ):
        raise SpecError(
            f"'early_stop.min_inputs' ({min_inputs:,}) must be below max_inputs "
            f"({max_inputs:,}); otherwise no run is ever stopped early",
            key="early_stop.min_inputs",
            value=min_inputs,
        )
    return EarlyStop(metric, mode, min_inputs, factor or DEFAULT_REDUCTION_FACTOR)


def _integer(value: dict[str, Any], key: str, *, minimum: int, required: bool) -> int | None:
    number = value.get(key)
    if number is None and not required:
        return None
    if isinstance(number, bool) or not isinstance(number, int) or number < minimum:
        raise SpecError(
            f"'early_stop.{key}' must be an integer >= {minimum}, got {number!r}",
            key=f"early_stop.{key}",
            value=number,
        )
    return number
