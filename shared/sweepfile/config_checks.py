"""The rules of FORMAT.md for one run's resolved configuration: keys, values and code.

The scalar settings' rules live in run_config.py (the engine applies them too); the code
blocks are compiled here, never run.
"""

from __future__ import annotations

import ast
import difflib
import math
from functools import lru_cache
from typing import Any

from shared.plugins import provided_by
from shared.project import DEFAULT_TRAINER, Project

from . import names
from .document import Locator
from .early_stop import check_early_stop
from .errors import SpecError
from .run_config import check_choice, check_scalars, check_schedule, check_stop, short, suggest


def is_code(key: str, value: Any) -> bool:
    """FORMAT.md: model/train_set*/validation_set* always; others only as multi-line strings."""
    if key in names.ALWAYS_CODE_KEYS or key.startswith(names.ALWAYS_CODE_PREFIXES):
        return True
    if key in names.NEVER_CODE_KEYS:
        return False
    return isinstance(value, str) and "\n" in value


def check_config(
    config: dict[str, Any],
    locator: Locator,
    plugins: tuple[str, ...] = (),
    project: Project | None = None,
) -> None:
    """SpecError, located in the YAML, for the first rule of FORMAT.md the run breaks.

    `plugins`: a `trainer` under one of these modules is left for the worker to resolve.
    `project`: the user's checkout; its trainers take keys (and its schedulers names) that only
    the worker can check, so they are accepted here where its files do not refute them.
    """
    source = trainer_source(config, plugins, project)
    try:
        _check_trainer(config, source, project)  # first: it decides which keys are known
        _check_keys(config, source, project)
        _check_values(config, source, project)
    except SpecError as exc:
        raise locator.locate(exc) from None
    for key, value in config.items():
        if key == "globals":
            for name, code in (value or {}).items():
                if isinstance(code, str):
                    _check_code(code, key=f"globals.{name}", locator=locator, path=(key, name))
        elif key != "matrix" and value is not None and is_code(key, value):
            if not isinstance(value, str):
                raise locator.locate(
                    SpecError(
                        f"'{key}' must be Python code (a string), not {type(value).__name__}",
                        key=key,
                        value=value,
                    )
                )
            _check_code(value, key=key, locator=locator, path=(key,))


def trainer_source(
    config: dict[str, Any], plugins: tuple[str, ...], project: Project | None
) -> str:
    """Who provides the run's trainer: "engine" (built in), "plugin" or "project".

    As nn-experiments' loader names them, the project's classes win over sweeps' built-in
    names: a built-in name (or no `trainer`: the loader's `Trainer`) is the project's when its
    checkout defines it. The worker decides with the same function (engine_for)."""
    trainer = config.get("trainer")
    trainer = DEFAULT_TRAINER if trainer is None else trainer
    if not isinstance(trainer, str):
        return "engine"  # refused by _check_trainer
    if trainer in names.TRAINERS:
        own = project is not None and project.defines_trainer(trainer)
        return "project" if own else "engine"
    if provided_by(trainer, plugins):
        return "plugin"
    return "project" if project is not None else "engine"


def _check_keys(config: dict[str, Any], source: str, project: Project | None) -> None:
    """Known keys only, unless the trainer is the user's (the original passes the rest to its
    constructor, which the worker checks)."""
    pass_through = source != "engine"
    for key in config:
        if not isinstance(key, str):
            raise SpecError(f"top-level key {key!r} must be a name", value=key)
        if key in names.KNOWN_KEYS or key.startswith(names.ALWAYS_CODE_PREFIXES):
            continue
        if pass_through and key.isidentifier():
            continue
        if key == "$extends":
            raise SpecError(
                "'$extends' needs its base file: `sweeps` CLI commands read it from disk; "
                "the API takes it in 'files' (JSON), the web form as a base file",
                key=key,
            )
        close = difflib.get_close_matches(key, names.KNOWN_KEYS, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else _built_in_hint(config, project)
        raise SpecError(f"unknown key '{key}'{hint}", key=key)
    for key in names.REQUIRED_KEYS:
        if not config.get(key):
            raise SpecError(f"required key '{key}' is missing or empty", key=key)
    check_stop(config)


def _built_in_hint(config: dict[str, Any], project: Project | None) -> str:
    """Why sweeps' own trainer is the one that refused a key, and how a project's gets it."""
    trainer = config.get("trainer") or DEFAULT_TRAINER
    if not isinstance(trainer, str) or trainer not in names.TRAINERS:
        return ""
    if project is None:
        return (
            f": the trainer {trainer!r} is sweeps' built-in, which takes only the keys of "
            f"FORMAT.md; for your checkout's {trainer} and its keys, set SWEEPS_PROJECT_ROOT "
            "to the checkout"
        )
    return (
        f": the trainer {trainer!r} is sweeps' built-in (the project {project.root} does not "
        "define it), which takes only the keys of FORMAT.md"
    )


def _check_values(config: dict[str, Any], source: str, project: Project | None) -> None:
    check_scalars(config)
    _check_learnrate(config["learnrate"])
    check_choice(config, "optimizer", names.OPTIMIZERS, "torch.optim")
    check_choice(config, "precision", names.PRECISIONS, "precisions")
    _check_project_scheduler(config, project)
    check_schedule(config, own_schedulers=project is not None)
    _check_loss(config.get("loss_function"))
    if not isinstance(config["experiment_name"], str):
        raise SpecError(
            f"'experiment_name' must be a string, not {type(config['experiment_name']).__name__}",
            key="experiment_name",
            value=config["experiment_name"],
        )
    if config.get("description") is not None and not isinstance(config["description"], str):
        raise SpecError("'description' must be text", key="description")
    if config.get("load") is not None and not isinstance(config["load"], str):
        raise SpecError("'load' must be the path of a checkpoint file or folder", key="load")
    collate = config.get("dataloader_collate_fn")
    if collate is not None and not is_code("dataloader_collate_fn", collate):
        raise SpecError(
            "'dataloader_collate_fn' must be code giving a function (a YAML '|' block)",
            key="dataloader_collate_fn",
            value=collate,
        )
    if "globals" in config and config["globals"] is not None:
        _check_globals(config["globals"])
    check_early_stop(config, own_trainer=source != "engine")


def _check_trainer(config: dict[str, Any], source: str, project: Project | None) -> None:
    value = config.get("trainer")
    if source == "engine" and project is None and _is_module_path(value):
        # A dotted name is a class of some project's module: a look-alike of ours ("did you
        # mean 'experiments.trainer.Trainer'?") would lead away from the real fix.
        raise SpecError(
            f"'trainer' {short(value)} is not supported: it is none of sweeps' trainers "
            f"({', '.join(names.TRAINERS)}); if it is your project's, set SWEEPS_PROJECT_ROOT "
            "to the checkout of your project that has it",
            key="trainer",
            value=value,
        )
    if source == "engine":
        where = "the engine's trainers" + (
            ""
            if project
            else "; or set SWEEPS_PROJECT_ROOT to the checkout of your project that has it"
        )
        check_choice(config, "trainer", names.TRAINERS, where)  # fmt: skip
    elif source == "project" and project is not None:
        problem = project.trainer_problem(str(config.get("trainer") or DEFAULT_TRAINER))
        if problem:
            raise SpecError(problem, key="trainer", value=config.get("trainer"))


def _is_module_path(value: Any) -> bool:
    """`pkg.module.Class`, not one of sweeps' own names."""
    return isinstance(value, str) and "." in value and value not in names.TRAINERS


def _check_project_scheduler(config: dict[str, Any], project: Project | None) -> None:
    """A scheduler that is not torch's must be in the project's src/scheduler.py."""
    value = config.get("scheduler")
    if project is None or not isinstance(value, str) or value in names.SCHEDULERS:
        return
    problem = project.scheduler_problem(value)
    if problem:
        raise SpecError(
            f"'scheduler' {value!r} is not one of torch.optim.lr_scheduler's "
            f"({', '.join(names.SCHEDULERS)}), and {problem}",
            key="scheduler",
            value=value,
        )


def _check_learnrate(value: Any) -> None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or number < 0:
        raise SpecError(
            f"'learnrate' must be a non-negative number, got {value!r}",
            key="learnrate",
            value=value,
        )


def _check_loss(value: Any) -> None:
    if value is None or (isinstance(value, str) and "\n" in value):
        return
    known = (*names.LOSS_ALIASES, *names.LOSS_FUNCTIONS, *names.LOSS_CLASSES)
    if isinstance(value, str) and value in known:
        return
    close = suggest(value, known)
    hint = f"; did you mean '{close}'?" if close else ""
    raise SpecError(
        f"'loss_function' {short(value)} is not a known loss{hint} "
        f"(aliases: {', '.join(names.LOSS_ALIASES)}; or a torch.nn loss class/function name)",
        key="loss_function",
        value=value,
    )


def _check_globals(value: Any) -> None:
    if not isinstance(value, dict):
        raise SpecError(
            f"'globals' must be a map of NAME: value, not {type(value).__name__}",
            key="globals",
            value=value,
        )
    for name in value:
        if not isinstance(name, str) or not name.isidentifier():
            raise SpecError(f"globals name {name!r} is not a Python identifier", key="globals")


def gives_value(statement: ast.stmt) -> bool:
    """A code block's last statement gives its value: an expression, or an assignment (whose
    right-hand side is the value, as nn-experiments takes it)."""
    if isinstance(statement, ast.AnnAssign):
        return statement.value is not None
    return isinstance(statement, ast.Expr | ast.Assign)


@lru_cache(maxsize=512)
def _compile_check(code: str) -> tuple[str, int, int] | None:
    """None when `code` compiles and ends in a value, else (message, line, column)."""
    try:
        tree = ast.parse(code)
        compile(tree, "<sweep>", "exec")
    except SyntaxError as exc:
        return (f"Python syntax error: {exc.msg}", exc.lineno or 1, exc.offset or 0)
    except ValueError as exc:  # e.g. null bytes in the source
        return (f"invalid Python source: {exc}", 1, 0)
    except (RecursionError, MemoryError):
        return ("the Python code is nested too deeply to compile", 1, 0)
    if not tree.body or not gives_value(tree.body[-1]):
        last = tree.body[-1].lineno if tree.body else 1
        return ("the last statement must be an expression giving the value (or assign it)",
                last, 0)  # fmt: skip
    return None


def _check_code(code: str, *, key: str, locator: Locator, path: tuple[str, ...]) -> None:
    problem = _compile_check(code)
    if problem is None:
        return
    message, code_line, column = problem
    first = locator.code_first_line(path)
    line = first + code_line - 1 if first is not None else None
    raise SpecError(
        f"{message} (line {code_line} of the code)",
        line=line,
        column=locator.code_column(line, code, code_line, column),
        key=key,
    )
