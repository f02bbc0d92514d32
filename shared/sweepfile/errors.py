"""The one error type of the sweep file format: a message plus where in the YAML it happened."""

from __future__ import annotations

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
        value = (
            self.value
            if isinstance(self.value, (int, float, bool, type(None)))
            else str(self.value)
        )
        return {
            "message": self.message,
            "line": self.line,
            "column": self.column,
            "key": self.key,
            "value": value if not isinstance(value, str) else value[:200],
            "run": self.run,
            "file": self.file,
            "location": self.location,
        }
