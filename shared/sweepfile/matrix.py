"""Matrix expansion exactly as FORMAT.md pins it: cartesian order, ids, slugs, `$filter`."""

from __future__ import annotations

import itertools
import math
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .errors import SpecError
from .safe_filter import evaluate_filter, make_evaluator

RESERVED = ("matrix_slug", "matrix_id")
FILTER_KEY = "$filter"
# nn-experiments' loader cuts each value's str() to 40 characters in a slug; the same cut keeps
# experiment names (and the checkpoint folders and `load:` paths built from them) identical.
SLUG_VALUE_CHARS = 40
_SLUG_KEEP = set(".,-_:")
PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
# A safety net for filters that are cheap each but many: the API answers within this.
FILTER_TIME_LIMIT_S = 20.0


@dataclass(frozen=True)
class MatrixEntry:
    matrix_id: str
    slug: str
    params: dict[str, Any] = field(default_factory=dict)

    def variables(self) -> dict[str, Any]:
        """What `${...}` may name for this entry."""
        return {**self.params, "matrix_slug": self.slug, "matrix_id": self.matrix_id}


def make_slug(params: dict[str, Any]) -> str:
    raw = "_".join(f"{key}:{str(value)[:SLUG_VALUE_CHARS]}" for key, value in params.items())
    return "".join(ch for ch in raw if ch.isalnum() or ch in _SLUG_KEEP)


def id_width(count: int) -> int:
    return max(1, math.ceil(math.log10(count))) if count > 0 else 1


def substitute(text: str, variables: dict[str, Any], *, what: str = "the file") -> str:
    """Replace every `${name}` with str(value); an unknown name is an error naming it."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1).strip()
        if name not in variables:
            raise unknown_name(text, match, variables, what=what)
        return str(variables[name])

    return PLACEHOLDER.sub(replace, text)


def check_names(text: str, variables: Iterable[str], *, what: str = "the file") -> None:
    """Raise for the first `${name}` in `text` that is not among `variables`."""
    known = dict.fromkeys(variables)
    for match in PLACEHOLDER.finditer(text):
        if match.group(1).strip() not in known:
            raise unknown_name(text, match, known, what=what)


def unknown_name(text: str, match: re.Match[str], known: Iterable[str], *, what: str) -> SpecError:
    name = match.group(1).strip()
    in_file = what == "the file"
    line = text.count("\n", 0, match.start()) + 1
    column = match.start() - (text.rfind("\n", 0, match.start()) + 1) + 1
    return SpecError(
        f"unknown substitution ${{{name}}} in {what}: '{name}' is not a matrix key "
        f"(known: {', '.join(known) or 'none'})",
        line=line if in_file else None,
        column=column if in_file else None,
        key=None if in_file else FILTER_KEY,
        value=name,
    )


def count_combinations(matrix: dict[str, Any]) -> int:
    return math.prod(len(v) for k, v in matrix.items() if k != FILTER_KEY)


def check_matrix(matrix: Any) -> None:
    if not isinstance(matrix, dict):
        raise SpecError(
            f"'matrix' must be a map of name -> list of values, not {type(matrix).__name__}",
            key="matrix",
        )
    for key, values in matrix.items():
        if key == FILTER_KEY:
            if not isinstance(values, str):
                raise SpecError("'$filter' must be a string expression", key=FILTER_KEY)
            continue
        if not isinstance(key, str) or not key:
            raise SpecError(f"matrix key {key!r} must be a non-empty name", key=str(key))
        if key in RESERVED:
            raise SpecError(f"'{key}' is reserved and cannot be a matrix key", key=key)
        if not isinstance(values, list):
            raise SpecError(
                f"matrix value for '{key}' must be a list, e.g. {key}: [{values!r}]",
                key=key,
                value=values,
            )


def expand_matrix(matrix: dict[str, Any] | None) -> list[MatrixEntry]:
    """All entries of the cartesian product, first key outermost, ids assigned before filtering."""
    if matrix is None or matrix == {}:
        return [MatrixEntry(matrix_id="1", slug="", params={})]
    check_matrix(matrix)
    keys = [k for k in matrix if k != FILTER_KEY]
    total = count_combinations(matrix)
    width = id_width(total)
    filter_text = matrix.get(FILTER_KEY)
    if filter_text is not None:
        check_names(filter_text, [*keys, *RESERVED], what="$filter")
    deadline = time.monotonic() + FILTER_TIME_LIMIT_S
    evaluator = make_evaluator()
    entries = []
    for index, combo in enumerate(itertools.product(*(matrix[k] for k in keys)), start=1):
        params = dict(zip(keys, combo, strict=True))
        entry = MatrixEntry(
            matrix_id=str(index).zfill(width), slug=make_slug(params), params=params
        )
        if filter_text is None:
            entries.append(entry)
            continue
        if index % 256 == 0 and time.monotonic() > deadline:
            raise SpecError(
                f"evaluating $filter over {total:,} combinations takes more than "
                f"{FILTER_TIME_LIMIT_S:.0f} s (stopped at {index:,}); simplify it",
                key=FILTER_KEY,
            )
        if _keep(filter_text, entry, evaluator):
            entries.append(entry)
    return entries


def keeps(filter_text: str, entry: MatrixEntry) -> bool:
    """Whether `$filter` keeps one entry (a sampled trial); SpecError if it cannot say."""
    return _keep(filter_text, entry, make_evaluator())


def _keep(filter_text: str, entry: MatrixEntry, evaluator: Any) -> bool:
    expression = substitute(filter_text.replace("\n", " "), entry.variables(), what="$filter")
    try:
        return bool(evaluate_filter(expression, evaluator))
    except SpecError as exc:
        raise SpecError(
            f"{exc.message} (in '{expression.strip()[:200]}')",
            key=FILTER_KEY,
            run=f"{entry.matrix_id} ({entry.slug})",
        ) from None
