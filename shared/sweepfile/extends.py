"""`$extends: base.yml`: a sweep file built on another one, as nn-experiments defines it.

nn-experiments loads the named file (relative to the extending file, after the same `${...}`
substitution) and lets the extending file's top-level keys replace the base's (a shallow
merge); a base may extend another. Because the merge is per top-level key and the
substitution is textual, the result is the same as one file made of the winning keys' text
blocks: that is what `merge_extends` builds, so the rest of the spec (matrix, substitution,
validation) runs unchanged on it, and the merged text is what a sweep stores and preview shows.
Errors in it are reported at the line of the file the block came from.
"""

from __future__ import annotations

import dataclasses
import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from .bounded import compose_bounded
from .errors import SpecError
from .parse import SweepSpec, parse_sweep

EXTENDS_KEY = "$extends"
MAX_CHAIN = 20  # files in one chain of $extends (a base of a base of ...)

# A file's text by its name (names are joined and normalised as POSIX paths), None if absent.
Loader = Callable[[str], str | None]


@dataclass(frozen=True)
class Merged:
    text: str
    files: tuple[str, ...]  # the extending file first, then its base, the base's base, ...
    origins: tuple[tuple[str, int], ...]  # (file, line) of each line of `text`

    def locate(self, exc: SpecError) -> SpecError:
        """Point an error in the merged text at the file and line it came from."""
        if exc.line is not None and 0 < exc.line <= len(self.origins) and exc.file is None:
            exc.file, exc.line = self.origins[exc.line - 1]
        return exc


def uses_extends(text: str) -> bool:
    return EXTENDS_KEY in text


def merge_extends(text: str, name: str, load: Loader) -> Merged | None:
    """The file with its bases merged in, or None when it has no top-level `$extends`."""
    chain: list[tuple[str, str, list[tuple[Any, int, int]]]] = []  # (name, text, blocks)
    current: str | None = name
    body = text
    while current is not None:
        blocks, base = _blocks(body, current)
        chain.append((current, body, blocks))
        if base is None:
            break
        target = posixpath.normpath(posixpath.join(posixpath.dirname(current), base))
        names = [entry[0] for entry in chain]
        if target in names or len(chain) >= MAX_CHAIN:
            loop = " -> ".join([*names, target])
            raise SpecError(
                f"circular $extends: {loop}"
                if target in names
                else f"$extends goes {MAX_CHAIN} files deep: {loop}",
                key=EXTENDS_KEY,
                file=current,
                line=_extends_line(body),
            )
        loaded = load(target)
        if loaded is None:
            raise SpecError(
                f"$extends: the base file '{target}' was not found"
                f" (names are relative to the extending file, {current})",
                key=EXTENDS_KEY,
                file=current,
                line=_extends_line(body),
                value=base,
            )
        current, body = target, loaded
    if len(chain) == 1:
        return None
    return _join(chain)


def _blocks(text: str, name: str) -> tuple[list[tuple[Any, int, int]], str | None]:
    """(key, first offset, end offset) of each top-level key's text, and the `$extends` value."""
    try:
        root = compose_bounded(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise SpecError(
            f"invalid YAML: {exc.problem or exc.context or 'cannot parse'}",
            file=name,
            line=mark.line + 1 if mark else None,
        ) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"invalid YAML: {exc}", file=name) from None
    except SpecError as exc:
        exc.file = name
        raise
    if not isinstance(root, yaml.MappingNode):
        raise SpecError("the file must be a YAML map of keys", file=name)
    if root.flow_style:
        raise SpecError(
            "a file that uses $extends, or is extended, must be a block map (one key per line)",
            file=name,
        )
    starts = [_line_start(text, key.start_mark.index) for key, _ in root.value]
    ends = [*starts[1:], root.end_mark.index]
    keys = [key.value for key, _ in root.value]
    blocks = list(zip(keys, starts, ends, strict=True))
    base = None
    for key, value in root.value:
        if key.value == EXTENDS_KEY:
            if not isinstance(value, yaml.ScalarNode) or not value.value or "${" in value.value:
                raise SpecError(
                    "'$extends' must be the name of one file, without ${...}",
                    key=EXTENDS_KEY,
                    file=name,
                    line=key.start_mark.line + 1,
                )
            base = str(value.value)
    return blocks, base


def _line_start(text: str, index: int) -> int:
    return text.rfind("\n", 0, index) + 1


def _extends_line(text: str) -> int | None:
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith(EXTENDS_KEY):
            return number
    return None


def _join(chain: list[tuple[str, str, list[tuple[Any, int, int]]]]) -> Merged:
    """Blocks in the order a dict merge `{**base, **file}` gives, each file's keys winning."""
    winner: dict[Any, tuple[str, str, int, int]] = {}
    for name, text, blocks in reversed(chain):  # the deepest base first
        for key, start, end in blocks:
            if key != EXTENDS_KEY:
                winner[key] = (name, text, start, end)
    files = tuple(entry[0] for entry in chain)
    header = f"# {EXTENDS_KEY} merged: {' <- '.join(files)}\n"
    parts = [header]
    origins: list[tuple[str, int]] = [(files[0], 1)]
    for name, text, start, end in winner.values():
        block = text[start:end]
        if not block.endswith("\n"):
            block += "\n"
        first = text.count("\n", 0, start) + 1
        parts.append(block)
        origins += [(name, first + i) for i in range(block.count("\n"))]
    return Merged(text="".join(parts), files=files, origins=tuple(origins))


def parse_with_extends(text: str | bytes, name: str, load: Loader, **limits: Any) -> SweepSpec:
    """parse_sweep on the file with its `$extends` bases merged in; errors name their file."""
    if isinstance(text, bytes):
        if b"$extends" not in text:
            return parse_sweep(text, **limits)
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            return parse_sweep(text, **limits)  # its SpecError says where
    merged = merge_extends(text, name, load) if uses_extends(text) else None
    if merged is None:
        return parse_sweep(text, **limits)
    try:
        sweep = parse_sweep(merged.text, **limits)
    except SpecError as exc:
        raise merged.locate(exc) from None
    return dataclasses.replace(sweep, merged_from=merged.files)
