"""Matrix expansion exactly as FORMAT.md pins it: cartesian order, ids, slugs, `$filter`."""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import SpecError
from .safe_filter import evaluate_filter

RESERVED = ("matrix_slug", "matrix_id")
FILTER_KEY = "$filter"
SLUG_VALUE_CHARS = 96
_SLUG_KEEP = set(".,-_:")
_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")


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
            line = text.count("\n", 0, match.start()) + 1
            known = ", ".join(variables) or "none"
            raise SpecError(
                f"unknown substitution ${{{name}}} in {what} (known: {known})",
                line=line if what == "the file" else None,
                value=name,
            )
        return str(variables[name])

    return _PLACEHOLDER.sub(replace, text)


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
    if not matrix:
        return [MatrixEntry(matrix_id="1", slug="", params={})]
    check_matrix(matrix)
    keys = [k for k in matrix if k != FILTER_KEY]
    total = count_combinations(matrix)
    width = id_width(total)
    filter_text = matrix.get(FILTER_KEY)
    entries = []
    for index, combo in enumerate(itertools.product(*(matrix[k] for k in keys)), start=1):
        params = dict(zip(keys, combo, strict=True))
        entry = MatrixEntry(matrix_id=str(index).zfill(width), slug=make_slug(params), params=params)
        if filter_text is not None and not _keep(filter_text, entry):
            continue
        entries.append(entry)
    return entries


def _keep(filter_text: str, entry: MatrixEntry) -> bool:
    expression = substitute(filter_text.replace("\n", " "), entry.variables(), what="$filter")
    try:
        return bool(evaluate_filter(expression))
    except SpecError as exc:
        raise SpecError(
            f"{exc.message} (in '{expression.strip()[:200]}')", key=FILTER_KEY, run=f"{entry.matrix_id} ({entry.slug})"
        ) from None
