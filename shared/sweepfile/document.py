"""Loading a sweep file's YAML safely, and finding the lines of its keys for error messages."""

from __future__ import annotations

from typing import Any

import yaml

from .errors import SpecError

LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# libyaml's composer recurses in C: a few ten thousand nested brackets crash the process, and
# its scanner slows quadratically with depth long before that. Real files nest a few levels.
MAX_YAML_DEPTH = 100
# Values visited when walking a loaded document (aliases count each time they are reached).
MAX_YAML_NODES = 1_000_000


def load_document(text: str) -> dict[str, Any]:
    """The file as a YAML map; SpecError for invalid, empty, too deep or too large YAML."""
    try:
        _check_depth(text)
        document = yaml.load(text, Loader=LOADER)
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
    for event in yaml.parse(text, Loader=LOADER):
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


class Locator:
    """Finds YAML lines of keys and code blocks, composing the document only when needed."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._root: yaml.Node | None = None

    def _node(self, path: tuple[str, ...]) -> tuple[yaml.Node, yaml.Node] | None:
        if self._root is None:
            try:
                self._root = yaml.compose(self._text, Loader=LOADER)
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
            nested = tuple(exc.key.split("."))  # e.g. early_stop.metric, or its parent
            exc.line = (
                self.key_line(*path)
                or self.key_line(*nested)
                or self.key_line(nested[0])
                or (self.key_line(parent) if parent else None)
            )
        return exc
