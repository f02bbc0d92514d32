"""The typed configuration of one run: its scalar keys, their rules and their defaults.

Written once for both sides: the parser checks every run of a sweep with these rules and keeps
the typed result on `RunSpec.settings`; the worker rebuilds the same type from the stored
configuration with `RunConfig.from_config`, which applies the same rules, and the engine takes
that. Pure Python.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import names
from .early_stop import EarlyStop
from .errors import SpecError

# Integer keys and their smallest allowed value.
INT_KEYS = {
    "batch_size": 1,
    "max_inputs": 1,
    "validation_batch_size": 1,
    "num_epochs_between_validations": 1,
    "num_inputs_between_validations": 1,
    "max_epoch": 1,
    "seed": 0,
    "num_workers": 0,
    "gradient_accumulation": 1,
}
BOOL_KEYS = ("freeze_validation_set", "compile", "step_graph")
# Integer keys a file may write as code (a multi-line string), as nn-experiments allows: the
# worker evaluates them; until then they take their default. The others decide what the
# service plans (the stop, early_stop's rungs), so they must be numbers in the file.
CODE_INT_KEYS = (
    "seed", "num_workers", "validation_batch_size",
    "num_epochs_between_validations", "num_inputs_between_validations",
)  # fmt: skip


def is_code_value(key: str, value: Any) -> bool:
    """A scalar key written as code (see CODE_INT_KEYS)."""
    return key in CODE_INT_KEYS and isinstance(value, str) and "\n" in value


# FORMAT.md's defaults for keys a file may leave out.
DEFAULTS: dict[str, Any] = {
    "trainer": "Trainer",
    "num_epochs_between_validations": 1,
    "num_workers": 0,
    "precision": "fp32",
    "compile": False,
    "step_graph": False,
    "freeze_validation_set": False,
    "gradient_accumulation": 1,
}


@dataclass(frozen=True)
class RunSettings:
    """The scalar keys of a run's configuration, typed, with FORMAT.md's defaults."""

    batch_size: int
    learnrate: float
    optimizer: str
    scheduler: str | None
    trainer: str
    max_inputs: int | None
    max_epoch: int | None
    validation_batch_size: int | None
    num_epochs_between_validations: int
    num_inputs_between_validations: int | None
    freeze_validation_set: bool
    seed: int | None
    num_workers: int
    precision: str
    compile: bool
    step_graph: bool
    early_stop: EarlyStop | None = None
    gradient_clipping: float | None = None
    gradient_accumulation: int = 1

    @classmethod
    def from_config(cls, config: dict[str, Any], *, own_schedulers: bool = False) -> RunSettings:
        """Typed settings of a stored configuration; SpecError naming a rule it breaks.

        `own_schedulers`: the user's project may provide the scheduler (the caller resolves it).
        """
        check_stop(config)
        check_scalars(config)
        check_choice(config, "precision", names.PRECISIONS, "precisions")
        check_schedule(config, own_schedulers=own_schedulers)
        return cls.of_checked(config)

    @classmethod
    def of_checked(cls, config: dict[str, Any]) -> RunSettings:
        """Typed settings of a configuration the rules above have passed, defaults filled in."""

        def opt_int(key: str) -> int | None:
            value = config.get(key)
            return None if value is None or is_code_value(key, value) else int(value)

        def default(key: str) -> Any:
            value = config.get(key)
            return DEFAULTS[key] if value is None or is_code_value(key, value) else value

        return cls(
            batch_size=int(config["batch_size"]),
            learnrate=float(config["learnrate"]),  # '3e-4' is a YAML 1.1 string
            optimizer=str(config["optimizer"]),
            scheduler=config.get("scheduler") or None,
            trainer=str(default("trainer")),
            max_inputs=opt_int("max_inputs"),
            max_epoch=opt_int("max_epoch"),
            validation_batch_size=opt_int("validation_batch_size"),
            num_epochs_between_validations=int(default("num_epochs_between_validations")),
            num_inputs_between_validations=opt_int("num_inputs_between_validations"),
            freeze_validation_set=bool(default("freeze_validation_set")),
            seed=opt_int("seed"),
            num_workers=int(default("num_workers")),
            precision=str(default("precision")),
            compile=bool(default("compile")),
            step_graph=bool(default("step_graph")),
            early_stop=EarlyStop.from_config(config),
            gradient_clipping=_opt_float(config.get("gradient_clipping")),
            gradient_accumulation=int(default("gradient_accumulation")),
        )

    @property
    def scheduler_steps(self) -> int:
        """A scheduler's length in optimizer steps: max_inputs // batch_size."""
        assert self.max_inputs is not None, "check_schedule requires max_inputs"
        return self.max_inputs // self.batch_size


@dataclass(frozen=True)
class RunConfig:
    """One run as the engine takes it: the typed settings, and the stored configuration that
    the code keys (model, datasets, loss, transforms) are read from as the run is built."""

    settings: RunSettings
    values: Mapping[str, Any]

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, own_schedulers: bool = False) -> RunConfig:
        """The typed run of a stored configuration; SpecError naming a rule it breaks.
        `own_schedulers`: as for RunSettings.from_config."""
        values = dict(config)
        return cls(RunSettings.from_config(values, own_schedulers=own_schedulers), values)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def check_stop(config: dict[str, Any]) -> None:
    if not config.get("max_inputs") and not config.get("max_epoch"):
        raise SpecError(
            "set 'max_inputs' or 'max_epoch': without either the run never stops",
            key="max_inputs",
        )


def check_scalars(config: dict[str, Any]) -> None:
    for key, minimum in INT_KEYS.items():
        value = config.get(key)
        if value is None or is_code_value(key, value):
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise SpecError(
                f"'{key}' must be an integer >= {minimum}, got {value!r}", key=key, value=value
            )
    for key in BOOL_KEYS:
        if key in config and not isinstance(config[key], bool):
            raise SpecError(
                f"'{key}' must be true or false, got {config[key]!r}", key=key, value=config[key]
            )
    _check_gradient_keys(config)


def _check_gradient_keys(config: dict[str, Any]) -> None:
    clip = config.get("gradient_clipping")
    if clip is not None and (
        isinstance(clip, bool) or not isinstance(clip, int | float) or not 0 < clip < math.inf
    ):
        raise SpecError(f"'gradient_clipping' must be a positive number, got {clip!r}",
                        key="gradient_clipping", value=clip)  # fmt: skip
    if config.get("step_graph") is True and clip is not None:
        raise SpecError("'gradient_clipping' is not supported with 'step_graph'",
                        key="gradient_clipping")  # fmt: skip
    for switch in ("step_graph", "compile"):
        # A compiled step's gradients may live in CUDA graph buffers the next step overwrites.
        if config.get(switch) is True and config.get("gradient_accumulation") not in (None, 1):
            raise SpecError(f"'gradient_accumulation' is not supported with '{switch}'",
                            key="gradient_accumulation")  # fmt: skip


def check_schedule(config: dict[str, Any], *, own_schedulers: bool = False) -> None:
    """`own_schedulers`: a name that is not torch's is left to the caller (a project's)."""
    if config.get("scheduler") is not None:
        if not (own_schedulers and isinstance(config["scheduler"], str)):
            check_choice(config, "scheduler", names.SCHEDULERS, "torch.optim.lr_scheduler")
        if not config.get("max_inputs"):
            raise SpecError("'scheduler' needs 'max_inputs' to know its length", key="scheduler")


def check_choice(config: dict[str, Any], key: str, allowed: tuple[str, ...], where: str) -> None:
    value = config.get(key)
    if value is None or (isinstance(value, str) and value in allowed):
        return
    close = suggest(value, allowed)
    hint = f"did you mean '{close}'? " if close else ""
    raise SpecError(
        f"'{key}' {short(value)} is not supported; {hint}"
        f"choose one of {', '.join(allowed)} ({where})",
        key=key,
        value=value,
    )


def suggest(value: Any, allowed: tuple[str, ...]) -> str | None:
    """The allowed name the user most likely meant: same letters in another case, else close."""
    text = str(value)[:200]
    same = [name for name in allowed if name.lower() == text.lower()]
    close = same or difflib.get_close_matches(text, allowed, n=1)
    return close[0] if close else None


def short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
