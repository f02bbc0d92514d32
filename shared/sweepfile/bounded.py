"""A YAML loader that judges a document in bounded time and memory, before anything expands.

PyYAML expands aliases and merge keys (`<<: [*a, *a]`) only when it constructs Python values,
and a merge copies the merged mapping's pairs: twenty levels of "merge the previous mapping
twice" make a 1 KB file cost a million pairs. This loader's composer measures every node as it
is composed (libyaml's C parser still does the scanning), so such a file is refused after a few
hundred small steps, naming the line and key where the limit was crossed:

- values: what a node holds once its aliases and merges are expanded (a scalar is 1);
- depth: nesting, aliases included, checked before descending (no deep recursion);
- alias surplus: the values that aliases add, summed over every load of one sweep (a sweep
  re-reads its file once per run, so a modest bomb times 10,000 runs is a bomb too);
- numbers: the characters of an int or float literal (Python refuses to convert integers of
  more than 4,300 digits, and no setting needs more than a few dozen).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent, MappingStartEvent, SequenceStartEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

from .errors import SpecError

MAX_VALUES = 100_000  # values in one document, aliases and merges expanded
MAX_DEPTH = 100  # real files nest a few levels
MAX_ALIAS_SURPLUS = 1_000_000  # values aliases add, over every load of one sweep
MAX_NUMBER_CHARS = 100
NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")

# libyaml's parser when PyYAML has it (the scanning is most of the time); PyYAML's otherwise.
_CParser: Any = getattr(getattr(yaml, "cyaml", None), "CParser", None)


@dataclass
class Budget:
    """What the loads of one sweep have spent; share one across a sweep's per-run loads."""

    alias_surplus: int = 0
    max_alias_surplus: int = MAX_ALIAS_SURPLUS
    loads: int = 0


class BoundedComposer(Composer):
    """Composes nodes as PyYAML does, measuring each one; SpecError past a limit."""

    def __init__(self, budget: Budget) -> None:
        Composer.__init__(self)
        self.budget = budget
        self.sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded values, height)
        self.path: list[str] = []  # the keys leading to the node being composed
        self.depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        named = isinstance(index, ScalarNode)  # a mapping's value: its key names it
        if named:
            self.path.append(str(index.value)[:100])
        try:
            if self.check_event(AliasEvent):
                self._use_alias(self.peek_event())
                return super().compose_node(parent, index)  # type: ignore[no-any-return]
            event = self.peek_event()
            opens = isinstance(event, SequenceStartEvent | MappingStartEvent)
            if opens:
                self.depth += 1
                if self.depth > MAX_DEPTH:
                    raise self._refuse(f"nested more than {MAX_DEPTH} levels deep", event)
            node: Node = super().compose_node(parent, index)
            if opens:
                self.depth -= 1
            self._measure(node)
            return node
        finally:
            if named:
                self.path.pop()

    def _use_alias(self, event: Any) -> None:
        node = self.anchors.get(event.anchor)
        if node is None:
            return  # PyYAML reports the undefined alias
        if id(node) not in self.sizes:
            raise self._refuse("an alias refers to the value that contains it", event)
        size, height = self.sizes[id(node)]
        if self.depth + height > MAX_DEPTH:
            raise self._refuse(
                f"nested more than {MAX_DEPTH} levels deep once aliases are expanded", event
            )
        self.budget.alias_surplus += size - 1
        if self.budget.alias_surplus > self.budget.max_alias_surplus:
            raise self._refuse(
                f"anchors and aliases expand to more than {self.budget.max_alias_surplus:,} "
                f"values over the sweep's {self.budget.loads:,} readings of the file "
                "(one per run)",
                event,
            )

    def _measure(self, node: Node) -> None:
        if isinstance(node, ScalarNode):
            self.sizes[id(node)] = (1, 0)
            if node.tag in NUMBER_TAGS and len(node.value) > MAX_NUMBER_CHARS:
                raise self._refuse(
                    f"a number of {len(node.value):,} characters; numbers are limited to "
                    f"{MAX_NUMBER_CHARS}",
                    node,
                )
            return
        children: list[Node] = (
            node.value
            if isinstance(node, SequenceNode)
            else [n for pair in node.value for n in pair]
            if isinstance(node, MappingNode)
            else []
        )
        measured = [self.sizes[id(child)] for child in children]
        size = 1 + sum(m[0] for m in measured)
        height = 1 + max((m[1] for m in measured), default=0)
        self.sizes[id(node)] = (size, height)
        if size > MAX_VALUES:
            raise self._refuse(
                f"the document expands to more than {MAX_VALUES:,} values "
                "(anchors, aliases and merge keys repeat their content)",
                node,
            )

    def _refuse(self, problem: str, where: Any) -> SpecError:
        mark = where.start_mark
        return SpecError(
            f"invalid YAML: {problem}",
            line=mark.line + 1,
            column=mark.column + 1,
            key=".".join(self.path) or None,
        )


class _PyParser(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser):
    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)


_Parser: Any = _CParser or _PyParser


class BoundedLoader(BoundedComposer, _Parser, SafeConstructor, Resolver):  # type: ignore[misc]
    """SafeLoader's values, with the composer above on libyaml's (or PyYAML's) parser."""

    def __init__(self, stream: str, budget: Budget | None = None) -> None:
        _Parser.__init__(self, stream)
        BoundedComposer.__init__(self, budget or Budget())
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self.budget.loads += 1


def load_bounded(text: str, budget: Budget | None = None) -> Any:
    """The document's Python value; SpecError (or a yaml.YAMLError) when it cannot be read."""
    loader = BoundedLoader(text, budget)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def compose_bounded(text: str) -> Node | None:
    """The document's node graph, measured as load_bounded measures it."""
    loader = BoundedLoader(text)
    try:
        return loader.get_single_node()  # type: ignore[no-any-return]
    finally:
        loader.dispose()
