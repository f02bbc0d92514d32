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
from .matrix import (
    FILTER_KEY,
    RESERVED,
    MatrixEntry,
    check_matrix,
    check_names,
    count_combinations,
    expand_matrix,
    substitute,
)

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
DEFAULT_MAX_RUNS = 10_000
# Each combination costs a $filter evaluation before anything is cut, so this is bounded too.
DEFAULT_MAX_COMBINATIONS = 100_000
# Every run re-parses the file after substitution: runs x file size is the work to validate.
DEFAULT_MAX_EXPANDED_CHARS = 32 * 2**20
# libyaml's composer recurses in C: a few ten thousand nested brackets crash the process, and
# its scanner slows quadratically with depth long before that. Real files nest a few levels.
MAX_YAML_DEPTH = 100
# Values visited when walking a loaded document (aliases count each time they are reached).
MAX_YAML_NODES = 1_000_000
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
_BOOL_KEYS = ("freeze_validation_set", "compile", "step_graph")
# Left out of config_hash: they name or describe a run but do not change what it trains.
_UNHASHED_KEYS = ("matrix", "description")


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
    combinations: int  # entries of the cartesian product before $filter (1 without a matrix)
    runs: list[RunSpec] = field(default_factory=list)


def is_code(key: str, value: Any) -> bool:
    """FORMAT.md: model/train_set*/validation_set* always; others only as multi-line strings."""
    if key in names.ALWAYS_CODE_KEYS or key.startswith(names.ALWAYS_CODE_PREFIXES):
        return True
    if key in names.NEVER_CODE_KEYS:
        return False
    return isinstance(value, str) and "\n" in value


def config_hash(config: dict[str, Any]) -> str:
    """sha256 of the canonical resolved configuration (key order and YAML layout don't matter)."""
    canonical = {
        str(k): _canonical_top(str(k), v) for k, v in config.items() if k not in _UNHASHED_KEYS
    }
    blob = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def _canonical_top(key: str, value: Any) -> Any:
    if key == "learnrate" and not isinstance(value, bool):
        try:
            return float(value)
        except (TypeError, ValueError):
            pass
    if isinstance(value, str) and is_code(key, value):
        return "\n".join(line.rstrip() for line in value.strip("\n").splitlines())
    return _canonical(value)


def _canonical(value: Any) -> Any:
    """A JSON value that is equal exactly when the YAML values are (types kept apart)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"float": repr(value)}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        pairs = [[_canonical(k), _canonical(v)] for k, v in value.items()]
        return {"map": sorted(pairs, key=lambda kv: json.dumps(kv[0], sort_keys=True))}
    if isinstance(value, set | frozenset):
        items = [_canonical(v) for v in value]
        return {"set": sorted(items, key=lambda v: json.dumps(v, sort_keys=True))}
    # dates, timestamps, bytes (!!binary): their text is stable
    return {type(value).__name__: str(value)}


def parse_sweep(
    text: str | bytes,
    *,
    max_runs: int = DEFAULT_MAX_RUNS,
    max_combinations: int = DEFAULT_MAX_COMBINATIONS,
    max_expanded_chars: int = DEFAULT_MAX_EXPANDED_CHARS,
) -> Sweep:
    """Validate and expand a sweep file into its runs. Raises SpecError naming what is wrong."""
    text = _decode(text)
    document = _load(text)
    locator = _Locator(text)
    matrix = _check_top_matrix(document, locator, max_combinations)
    keys = [k for k in (matrix or {}) if k != FILTER_KEY]
    if matrix is not None:
        # Names do not depend on the entry: check every ${...} of the file once, comments too.
        check_names(text, [*keys, *RESERVED])
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
    template = _without_matrix_block(text, locator) if matrix is not None else text
    if len(template) * len(entries) > max_expanded_chars:
        raise SpecError(
            f"the file is {len(text):,} characters and gives {len(entries):,} runs: too much "
            f"to validate (runs x size over {max_expanded_chars:,}); split the sweep",
            key="matrix",
            line=locator.key_line("matrix"),
        )
    runs = [_build_run(template, entry, matrix=document.get("matrix")) for entry in entries]
    total = count_combinations(matrix) if matrix is not None else 1
    return Sweep(yaml_text=text, matrix_keys=keys, combinations=total, runs=runs)


def _check_top_matrix(
    document: dict[str, Any], locator: _Locator, max_combinations: int
) -> dict[str, Any] | None:
    """The matrix to expand, or None for a missing/empty one (one run, no substitution)."""
    matrix = document.get("matrix")
    if matrix is None or matrix == {}:
        return None
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
    return matrix


def _decode(text: str | bytes) -> str:
    if isinstance(text, bytes):
        raw = text
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            raise SpecError(
                f"the file is not UTF-8: byte 0x{raw[exc.start]:02x} at offset {exc.start}",
                line=line,
            ) from None
    else:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            line = text.count("\n", 0, exc.start) + 1
            raise SpecError(
                f"the file is not valid Unicode at offset {exc.start}", line=line
            ) from None
    return text.removeprefix("\ufeff")


def _load(text: str) -> dict[str, Any]:
    try:
        _check_depth(text)
        document = yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = ", ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        if mark and 0 <= mark.index < len(text) and text[mark.index] == "\t":
            problem += " (a tab: YAML indents with spaces only)"
        raise SpecError(
            f"invalid YAML: {problem}",
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
        ) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character[:1] or " ")
        raise SpecError(
            f"invalid YAML: {exc.reason} (character U+{code:04X})", line=line, column=column
        ) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"invalid YAML: {exc}") from None
    if document is None:
        raise SpecError("the file is empty: expected a map with experiment_name, model, ...")
    if not isinstance(document, dict):
        raise SpecError(f"the file must be a YAML map of keys, not a {type(document).__name__}")
    _check_size(document)
    return document


def _check_depth(text: str) -> None:
    """Refuse deep nesting from libyaml's (non-recursive) event stream, before composing."""
    depth = 0
    starts = (yaml.SequenceStartEvent, yaml.MappingStartEvent)
    ends = (yaml.SequenceEndEvent, yaml.MappingEndEvent)
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, starts):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                mark = event.start_mark
                raise SpecError(
                    f"invalid YAML: nested more than {MAX_YAML_DEPTH} levels deep",
                    line=mark.line + 1,
                    column=mark.column + 1,
                )
        elif isinstance(event, ends):
            depth -= 1


def _check_size(document: Any) -> None:
    """Refuse alias bombs and self-referencing aliases, which expand without bound.

    Sizes and depths are computed once per distinct container (aliases share objects), so a
    billion-value bomb is measured in the time it takes to visit its few hundred nodes.
    """
    sizes: dict[int, tuple[int, int]] = {}  # id -> (values when expanded, depth)
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(document, False)]
    while stack:
        node, done = stack.pop()
        children = _children(node)
        if children is None:
            continue
        key = id(node)
        if done:
            on_path.discard(key)
            measured = [sizes.get(id(c), (1, 0)) for c in children]
            size = 1 + sum(m[0] for m in measured)
            depth = 1 + max((m[1] for m in measured), default=0)
            sizes[key] = (size, depth)
            if size > MAX_YAML_NODES:
                raise SpecError(
                    f"invalid YAML: the document expands to more than {MAX_YAML_NODES:,} "
                    "values (anchors and aliases repeat their content)"
                )
            if depth > MAX_YAML_DEPTH:
                raise SpecError(
                    f"invalid YAML: nested more than {MAX_YAML_DEPTH} levels deep "
                    "once aliases are expanded"
                )
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise SpecError("invalid YAML: an alias refers to the value that contains it")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if _children(c) is not None)


def _children(node: Any) -> list[Any] | None:
    if isinstance(node, dict):
        return [item for pair in node.items() for item in pair]
    if isinstance(node, list | tuple | set | frozenset):
        return list(node)
    return None


def _without_matrix_block(text: str, locator: _Locator) -> str:
    """The raw text with the matrix value blanked (same line count), for the per-run passes.

    The matrix is read from the first pass only; re-parsing a big one for each run was most of
    the time of a 10,000-run sweep. Kept as is when anchors could be shared with other keys.
    """
    span = locator.value_span("matrix")
    if span is None:
        return text
    start, end = span
    block = text[start:end]
    if "&" in block or "*" in block:
        return text
    return text[:start] + "{}" + "\n" * block.count("\n") + text[end:]


def _build_run(template: str, entry: MatrixEntry, *, matrix: Any) -> RunSpec:
    label = f"{entry.matrix_id} ({entry.slug})" if entry.slug else None
    text = template if matrix is None or matrix == {} else substitute(template, entry.variables())
    try:
        config = _load(text)
        if "matrix" in config:
            config["matrix"] = matrix
        _validate(config, _Locator(text))
    except SpecError as exc:
        exc.run = exc.run or label
        raise
    if isinstance(config["learnrate"], str):  # PyYAML 1.1 reads 3e-4 as a string
        config["learnrate"] = float(config["learnrate"])
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
        raise SpecError(
            f"'experiment_name' must be a string, not {type(config['experiment_name']).__name__}",
            key="experiment_name",
            value=config["experiment_name"],
        )
    if config.get("description") is not None and not isinstance(config["description"], str):
        raise SpecError("'description' must be text", key="description")
    if "globals" in config and config["globals"] is not None:
        _check_globals(config["globals"])


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


def _check_name(config: dict[str, Any], key: str, allowed: tuple[str, ...], where: str) -> None:
    value = config.get(key)
    if value is None or (isinstance(value, str) and value in allowed):
        return
    close = _suggest(value, allowed)
    hint = f"did you mean '{close}'? " if close else ""
    raise SpecError(
        f"'{key}' {_short(value)} is not supported; {hint}"
        f"choose one of {', '.join(allowed)} ({where})",
        key=key,
        value=value,
    )


def _check_loss(value: Any) -> None:
    if value is None or (isinstance(value, str) and "\n" in value):
        return
    known = (*names.LOSS_ALIASES, *names.LOSS_FUNCTIONS, *names.LOSS_CLASSES)
    if isinstance(value, str) and value in known:
        return
    close = _suggest(value, known)
    hint = f"; did you mean '{close}'?" if close else ""
    raise SpecError(
        f"'loss_function' {_short(value)} is not a known loss{hint} "
        f"(aliases: {', '.join(names.LOSS_ALIASES)}; or a torch.nn loss class/function name)",
        key="loss_function",
        value=value,
    )


def _suggest(value: Any, allowed: tuple[str, ...]) -> str | None:
    """The allowed name the user most likely meant: same letters in another case, else close."""
    text = str(value)[:200]
    same = [name for name in allowed if name.lower() == text.lower()]
    close = same or difflib.get_close_matches(text, allowed, n=1)
    return close[0] if close else None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


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
    except (RecursionError, MemoryError):
        return ("the Python code is nested too deeply to compile", 1, 0)
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
        column=locator.code_column(line, code, code_line, column),
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

    def value_span(self, key: str) -> tuple[int, int] | None:
        """Character offsets of a top-level key's value, when the key occurs exactly once."""
        if self._node((key,)) is None or not isinstance(self._root, yaml.MappingNode):
            return None
        pairs = [v for k, v in self._root.value if k.value == key]
        if len(pairs) != 1:
            return None
        return pairs[0].start_mark.index, pairs[0].end_mark.index

    def code_first_line(self, path: tuple[str, ...]) -> int | None:
        pair = self._node(path)
        if not pair:
            return None
        value = pair[1]
        block = getattr(value, "style", None) in ("|", ">")
        return value.start_mark.line + 1 + (1 if block else 0)

    def code_column(self, line: int | None, code: str, code_line: int, column: int) -> int | None:
        """The YAML column of a column in the code: add the block's indentation."""
        if line is None or column <= 0:
            return None
        lines = self._text.splitlines()
        source = code.splitlines()
        if not 0 < line <= len(lines) or not 0 < code_line <= len(source):
            return column
        raw, own = lines[line - 1], source[code_line - 1]
        return len(raw) - len(own) + column if raw.endswith(own) else column

    def locate(self, exc: SpecError, parent: str | None = None) -> SpecError:
        if exc.line is None and exc.key is not None:
            path = (parent, exc.key) if parent and exc.key != parent else (exc.key,)
            exc.line = self.key_line(*path) or (self.key_line(parent) if parent else None)
        return exc
