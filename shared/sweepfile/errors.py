"""The one error type of the sweep file format: a message plus where in the YAML it happened."""

from __future__ import annotations

import math
from typing import Any


class SpecError(ValueError):
    """A sweep file that cannot be run, with the line/column/key/value it concerns."""

    def __init__(
        self,
        message: str,
        *,
        line: int | None = None,
        column: int | None = None,
        key: str | None = None,
        value: Any = None,
        run: str | None = None,
        file: str | None = None,
    ) -> None:
        self.message = message
        self.line = line
        self.column = column
        self.key = key
        self.value = value
        self.run = run
        self.file = file  # which file, when the sweep is several ($extends)
        super().__init__(str(self))

    @property
    def location(self) -> str:
        parts = [self.file] if self.file is not None else []
        if self.line is not None:
            parts.append(f"line {self.line}" + (f", column {self.column}" if self.column else ""))
        if self.key is not None:
            parts.append(f"key '{self.key}'")
        if self.run is not None:
            parts.append(f"run {self.run}")
        return ", ".join(parts)

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message

    def to_dict(self) -> dict[str, Any]:
        """The error as JSON can carry it, whatever its value (NaN, infinities, huge numbers)."""
        return {
            "message": self.message,
            "line": self.line,
            "column": self.column,
            "key": self.key,
            "value": reportable(self.value),
            "run": self.run,
            "file": self.file,
            "location": self.location,
        }


# JSON numbers that every client reads exactly (JavaScript's safe integers).
_SAFE_INT = 2**53


def reportable(value: Any) -> Any:
    """`value` as a JSON-safe scalar: NaN, infinities and huge integers become text."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if -_SAFE_INT <= value <= _SAFE_INT:
            return value
        try:
            return f"an integer of {len(str(abs(value))):,} digits"
        except ValueError:  # past Python's limit on converting integers to text
            return f"an integer of about {math.floor(math.log10(abs(value))) + 1:,} digits"
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)  # 'nan', 'inf', '-inf'
    try:
        text = str(value)
    except ValueError:  # e.g. a container holding a huge integer
        text = f"a {type(value).__name__}"
    return text[:200]
