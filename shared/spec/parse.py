"""parse_sweep: YAML text -> validated runs, without executing any of the file's code."""

from __future__ import annotations

import ast
import difflib
import hashlib
import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import yaml

from . import names
from .errors import SpecError
from .matrix import FILTER_KEY, MatrixEntry, check_matrix, count_combinations, expand_matrix, substitute

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
DEFAULT_MAX_RUNS = 10_000
# Each combination costs a $filter evaluation before anything is cut, so this is bounded too.
DEFAULT_MAX_COMBINATIONS = 100_000
_INT_KEYS = {
    "batch_size": 1,
    "max_inputs": 1,
    "validation_batch_size": 1,
    "num_epochs_between_validations": 1,
    "num_inputs_between_validations": 1,
    "max_epoch": 1,
    "seed": 0,
    "num_workers": 0,
}
_BOOL_KEYS = ("freeze_validation_set", "compile")


@dataclass(frozen=True)
class RunSpec:
    matrix_id: str
    slug: str
    params: dict[str, Any]
    experiment_name: str
    config: dict[str, Any]
    config_hash: str


@dataclass(frozen=True)
class Sweep:
    yaml_text: str
    matrix_keys: list[str]
    combinations: int
    runs: list[RunSpec] = field(default_factory=list)


def is_code(key: str, value: Any) -> bool:
    """FORMAT.md: model/train_set*/validation_set* always; others only as multi-line strings."""
    if key.startswith(names.ALWAYS_CODE_PREFIXES):
        return True
    return isinstance(value, str) and "\n" in value


def config_hash(config: dict[str, Any]) -> str:
    """sha256 of the canonical resolved configuration (key order and YAML layout don't matter)."""
    canonical = {k: _canonical(k, v) for k, v in config.items() if k != "matrix"}
    blob = json.dumps(canonical, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _canonical(key: str, value: Any) -> Any:
    if key == "learnrate":
        return float(value)
    if isinstance(value, str) and is_code(key, value):
        return "\n".join(line.rstrip() for line in value.strip("\n").splitlines())
    return value


def parse_sweep(
    text: str | bytes,
    *,
    max_runs: int = DEFAULT_MAX_RUNS,
    max_combinations: int = DEFAULT_MAX_COMBINATIONS,
) -> Sweep:
    """Validate and expand a sweep file into its runs. Raises SpecError naming what is wrong."""
    text = _decode(text)
    document = _load(text)
    locator = _Locator(text)
    matrix = document.get("matrix")
    if matrix:
        try:
            check_matrix(matrix)
        except SpecError as exc:
            raise locator.locate(exc, parent="matrix") from None
        total = count_combinations(matrix)
        if total > max_combinations:
            raise SpecError(
                f"matrix expands to {total:,} combinations before $filter; "
                f"the limit is {max_combinations:,}",
                key="matrix",
                line=locator.key_line("matrix"),
                value=total,
            )
    try:
        entries = expand_matrix(matrix)
    except SpecError as exc:
        raise locator.locate(exc, parent="matrix") from None
    if len(entries) > max_runs:
        raise SpecError(
            f"matrix gives {len(entries):,} runs; the limit is {max_runs:,}",
            key="matrix",
            line=locator.key_line("matrix"),
            value=len(entries),
        )
    runs = [_build_run(text, entry, substituting=bool(matrix)) for entry in entries]
    keys = [k for k in (matrix or {}) if k != FILTER_KEY]
    return Sweep(yaml_text=text, matrix_keys=keys, combinations=len(entries) and max(
        len(entries), count_combinations(matrix) if matrix else 1), runs=runs)


def _decode(text: str | bytes) -> str:
    if isinstance(text, str):
        return text
    try:
        return text.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = text.count(b"\n", 0, exc.start) + 1
        raise SpecError(
            f"the file is not UTF-8: byte 0x{text[exc.start]:02x} at offset {exc.start}",
            line=line,
        ) from None


def _load(text: str) -> dict[str, Any]:
    try:
        document = yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        raise SpecError(
            f"invalid YAML: {problem}",
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
        ) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"invalid YAML: {exc}") from None
    if document is None:
        raise SpecError("the file is empty: expected a map with experiment_name, model, ...")
    if not isinstance(document, dict):
        raise SpecError(f"the file must be a YAML map of keys, not a {type(document).__name__}")
    return document


def _build_run(raw_text: str, entry: MatrixEntry, *, substituting: bool) -> RunSpec:
    label = f"{entry.matrix_id} ({entry.slug})" if entry.slug else None
    text = raw_text
    try:
        if substituting:
            text = substitute(raw_text, entry.variables())
        config = _load(text)
        _validate(config, _Locator(text))
    except SpecError as exc:
        exc.run = exc.run or label
        raise
    return RunSpec(
        matrix_id=entry.matrix_id,
        slug=entry.slug,
        params=entry.params,
        experiment_name=str(config["experiment_name"]),
        config=config,
        config_hash=config_hash(config),
    )


def _validate(config: dict[str, Any], locator: _Locator) -> None:
    try:
        _check_keys(config)
        _check_values(config)
    except SpecError as exc:
        raise locator.locate(exc) from None
    for key, value in config.items():
        if key == "globals":
            for name, code in (value or {}).items():
                if isinstance(code, str):
                    _check_code(code, key=f"globals.{name}", locator=locator, path=(key, name))
        elif key != "matrix" and is_code(key, value):
            if not isinstance(value, str):
                raise locator.locate(
                    SpecError(f"'{key}' must be Python code (a string)", key=key, value=value)
                )
            _check_code(value, key=key, locator=locator, path=(key,))


def _check_keys(config: dict[str, Any]) -> None:
    for key in config:
        if not isinstance(key, str):
            raise SpecError(f"top-level key {key!r} must be a name", value=key)
        if key in names.KNOWN_KEYS or key.startswith(names.ALWAYS_CODE_PREFIXES):
            continue
        close = difflib.get_close_matches(key, names.KNOWN_KEYS, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise SpecError(f"unknown key '{key}'{hint}", key=key)
    for key in names.REQUIRED_KEYS:
        if not config.get(key):
            raise SpecError(f"required key '{key}' is missing or empty", key=key)
    if not config.get("max_inputs") and not config.get("max_epoch"):
        raise SpecError(
            "set 'max_inputs' or 'max_epoch': without either the run never stops",
            key="max_inputs",
        )


def _check_values(config: dict[str, Any]) -> None:
    for key, minimum in _INT_KEYS.items():
        value = config.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise SpecError(
                f"'{key}' must be an integer >= {minimum}, got {value!r}", key=key, value=value
            )
    for key in _BOOL_KEYS:
        if key in config and not isinstance(config[key], bool):
            raise SpecError(
                f"'{key}' must be true or false, got {config[key]!r}", key=key, value=config[key]
            )
    _check_learnrate(config["learnrate"])
    _check_name(config, "optimizer", names.OPTIMIZERS, "torch.optim")
    _check_name(config, "trainer", names.TRAINERS, "the engine's trainers")
    _check_name(config, "precision", names.PRECISIONS, "precisions")
    if config.get("scheduler") is not None:
        _check_name(config, "scheduler", names.SCHEDULERS, "torch.optim.lr_scheduler")
        if not config.get("max_inputs"):
            raise SpecError("'scheduler' needs 'max_inputs' to know its length", key="scheduler")
    _check_loss(config.get("loss_function"))
    if not isinstance(config["experiment_name"], str):
        raise SpecError("'experiment_name' must be a string", key="experiment_name")
    if "globals" in config and config["globals"] is not None:
        _check_globals(config["globals"])


def _check_learnrate(value: Any) -> None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or number < 0:
        raise SpecError(
            f"'learnrate' must be a non-negative number, got {value!r}", key="learnrate", value=value
        )


def _check_name(config: dict[str, Any], key: str, allowed: tuple[str, ...], where: str) -> None:
    value = config.get(key)
    if value is None or value in allowed:
        return
    close = difflib.get_close_matches(str(value), allowed, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise SpecError(
        f"'{key}' {value!r} is not supported; {hint}choose one of {', '.join(allowed)} ({where})",
        key=key,
        value=value,
    )


def _check_loss(value: Any) -> None:
    if value is None or (isinstance(value, str) and "\n" in value):
        return
    known = (*names.LOSS_ALIASES, *names.LOSS_FUNCTIONS, *names.LOSS_CLASSES)
    if value in known:
        return
    close = difflib.get_close_matches(str(value), known, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise SpecError(
        f"'loss_function' {value!r} is not a known loss{hint} "
        f"(aliases: {', '.join(names.LOSS_ALIASES)}; or a torch.nn loss class/function name)",
        key="loss_function",
        value=value,
    )


def _check_globals(value: Any) -> None:
    if not isinstance(value, dict):
        raise SpecError("'globals' must be a map of NAME: value", key="globals", value=value)
    for name in value:
        if not isinstance(name, str) or not name.isidentifier():
            raise SpecError(f"globals name {name!r} is not a Python identifier", key="globals")


@lru_cache(maxsize=512)
def _compile_check(code: str) -> tuple[str, int, int] | None:
    """None when `code` compiles and ends in an expression, else (message, line, column)."""
    try:
        tree = ast.parse(code)
        compile(tree, "<sweep>", "exec")
    except SyntaxError as exc:
        return (f"Python syntax error: {exc.msg}", exc.lineno or 1, exc.offset or 0)
    except ValueError as exc:  # e.g. null bytes in the source
        return (f"invalid Python source: {exc}", 1, 0)
    if not tree.body or not isinstance(tree.body[-1], ast.Expr):
        last = tree.body[-1].lineno if tree.body else 1
        return ("the last statement must be an expression giving the value", last, 0)
    return None


def _check_code(code: str, *, key: str, locator: _Locator, path: tuple[str, ...]) -> None:
    problem = _compile_check(code)
    if problem is None:
        return
    message, code_line, column = problem
    first = locator.code_first_line(path)
    line = first + code_line - 1 if first is not None else None
    raise SpecError(
        f"{message} (line {code_line} of the code)",
        line=line,
        column=column or None,
        key=key,
    )


class _Locator:
    """Finds YAML lines of keys and code blocks, composing the document only when needed."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._root: yaml.Node | None = None

    def _node(self, path: tuple[str, ...]) -> tuple[yaml.Node, yaml.Node] | None:
        if self._root is None:
            try:
                self._root = yaml.compose(self._text, Loader=_Loader)
            except yaml.YAMLError:
                return None
        node: Any = self._root
        pair = None
        for part in path:
            if not isinstance(node, yaml.MappingNode):
                return None
            pair = next(((k, v) for k, v in node.value if k.value == part), None)
            if pair is None:
                return None
            node = pair[1]
        return pair

    def key_line(self, *path: str) -> int | None:
        pair = self._node(path)
        return pair[0].start_mark.line + 1 if pair else None

    def code_first_line(self, path: tuple[str, ...]) -> int | None:
        pair = self._node(path)
        if not pair:
            return None
        value = pair[1]
        block = getattr(value, "style", None) in ("|", ">")
        return value.start_mark.line + 1 + (1 if block else 0)

    def locate(self, exc: SpecError, parent: str | None = None) -> SpecError:
        if exc.line is None and exc.key is not None:
            path = (parent, exc.key) if parent and exc.key != parent else (exc.key,)
            exc.line = self.key_line(*path) or (self.key_line(parent) if parent else None)
        return exc
