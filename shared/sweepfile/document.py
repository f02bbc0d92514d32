"""Loading a sweep file's YAML safely, and finding the lines of its keys for error messages."""

from __future__ import annotations

from typing import Any

import yaml

from .bounded import Budget, compose_bounded, load_bounded
from .errors import SpecError


def load_document(text: str, budget: Budget | None = None) -> dict[str, Any]:
    """The file as a YAML map; SpecError for invalid, empty, too deep or too large YAML.

    Every load of a sweep file goes through the bounded loader (bounded.py); `budget` is shared
    by the loads of one sweep.
    """
    try:
        document = load_bounded(text, budget)
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
    return document


class Locator:
    """Finds YAML lines of keys and code blocks, composing the document only when needed."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._root: yaml.Node | None = None

    def _node(self, path: tuple[str, ...]) -> tuple[yaml.Node, yaml.Node] | None:
        if self._root is None:
            try:
                self._root = compose_bounded(self._text)
            except (yaml.YAMLError, SpecError):
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
            nested = tuple(exc.key.split("."))  # e.g. early_stop.metric, or its parent
            exc.line = (
                self.key_line(*path)
                or self.key_line(*nested)
                or self.key_line(nested[0])
                or (self.key_line(parent) if parent else None)
            )
        return exc
