"""Loading a sweep's runs by top-level key, each distinct substituted key loaded once.

A 10,000-run sweep used to load the whole substituted file once per run; yet most keys
(`model` with `${hidden}`, `train_set`, `globals`) take only a few distinct texts across the
runs. A file whose top level is a plain block mapping is cut into sections, one per top-level
key (from the key's first character to the next key's); each run's section texts are
substituted, and a section text already loaded is reused.

It gives what loading the whole text gives: top-level block-mapping entries are independent
in YAML unless anchors/aliases, directives or document markers tie them, and a file with any
of those is not cut (`SectionLoader.of` returns None). A run whose sections do not load on
their own (a substituted value opening a bracket or quote that a later key closes) returns
None too, and the caller loads its whole text, with the whole text's line numbers.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import yaml

from .bounded import Budget
from .document import load_document
from .errors import SpecError
from .matrix import substitute

# Only scanning and composing the template, which the bounded loader has already read whole.
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
_TIES = (yaml.AnchorToken, yaml.AliasToken, yaml.DirectiveToken, yaml.DocumentStartToken,
         yaml.DocumentEndToken)  # fmt: skip
MAX_CACHED = 50_000  # distinct section texts kept; past it, sections load without the cache


class SectionLoader:
    """`load(variables)` -> (the run's substituted text, its document), or None."""

    def __init__(
        self, prefix: str, sections: list[tuple[str, tuple[str, ...]]], budget: Budget | None
    ) -> None:
        self._budget = budget  # the sweep's, shared with its other loads (bounded.py)
        self._prefix = prefix  # comments before the first key (substituted, never loaded)
        self._sections = sections  # (text, the ${names} it uses)
        self._cache: dict[tuple[int, tuple[str, ...]], tuple[str, dict[str, Any]]] = {}

    @classmethod
    def of(cls, template: str, budget: Budget | None = None) -> SectionLoader | None:
        """A loader for `template`, or None when its top level cannot be cut safely."""
        try:
            if any(isinstance(t, _TIES) for t in yaml.scan(template, Loader=LOADER)):
                return None
            root = yaml.compose(template, Loader=LOADER)
        except yaml.YAMLError:
            return None
        if not isinstance(root, yaml.MappingNode) or root.flow_style or not root.value:
            return None
        starts = [key.start_mark.index for key, _ in root.value]
        if any(key.start_mark.column != 0 for key, _ in root.value) or starts != sorted(starts):
            return None
        ends = [*starts[1:], len(template)]
        sections = [
            (part, tuple(dict.fromkeys(m.strip() for m in _PLACEHOLDER.findall(part))))
            for part in (template[start:end] for start, end in zip(starts, ends, strict=True))
        ]
        return cls(template[: starts[0]], sections, budget)

    def load(self, variables: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        texts = [substitute(self._prefix, variables)] if self._prefix else []
        document: dict[str, Any] = {}
        for index, (part, names) in enumerate(self._sections):
            key = (index, tuple(str(variables[name]) for name in names))
            found = self._cache.get(key)
            if found is None:
                text = substitute(part, variables) if names else part
                try:
                    found = (text, load_document(text, self._budget))
                except SpecError:
                    return None
                if len(self._cache) < MAX_CACHED:
                    self._cache[key] = found
            texts.append(found[0])
            for name, value in found[1].items():
                # Each run gets its own copy of what it may share with other runs.
                document[name] = copy.deepcopy(value) if isinstance(value, dict | list) else value
        return "".join(texts), document
