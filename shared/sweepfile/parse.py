"""parse_sweep: YAML text -> validated runs, without executing any of the file's code."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from shared.project import PATH_PLACEHOLDER, Project

from .bounded import Budget
from .config_checks import check_config, is_code, trainer_source
from .document import Locator, load_document
from .encoding import NotUtf8, decode_utf8
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
from .run_config import RunSettings
from .search import Search, parse_search, probe_points
from .sections import SectionLoader

DEFAULT_MAX_RUNS = 10_000
# Each combination costs a $filter evaluation before anything is cut, so this is bounded too.
DEFAULT_MAX_COMBINATIONS = 100_000
# Every run re-parses the file after substitution: runs x file size is the work to validate.
DEFAULT_MAX_EXPANDED_CHARS = 32 * 2**20
# Left out of config_hash: they name or describe a run but do not change what it trains.
# early_stop and search too: they decide which runs train and whether a run goes on, not
# what a finished run trained (a sampled trial equal to a finished run reuses it).
_UNHASHED_KEYS = ("matrix", "description", "early_stop", "search")


@dataclass(frozen=True)
class RunSpec:
    matrix_id: str
    slug: str
    params: dict[str, Any]
    experiment_name: str
    config: dict[str, Any]
    config_hash: str
    settings: RunSettings  # the typed scalar keys the engine runs with


@dataclass(frozen=True)
class SweepSpec:
    yaml_text: str
    matrix_keys: list[str]
    combinations: int  # entries of the cartesian product before $filter (1 without a matrix)
    runs: list[RunSpec] = field(default_factory=list)
    # With $extends: the files merged into yaml_text, the extending one first.
    merged_from: tuple[str, ...] = ()
    # With `search`: how trials are asked. Sampled (random, tpe) sweeps have no `runs` up
    # front; `probes` are the points built and validated at submit (search.py).
    search: Search | None = None
    probes: list[RunSpec] = field(default_factory=list)


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
    plugins: tuple[str, ...] = (),
    project: Project | None = None,
) -> SweepSpec:
    """Validate and expand a sweep file into its runs. Raises SpecError naming what is wrong.

    `plugins`: modules the workers offer (shared/plugins.py); a `trainer` under one of them
    is accepted here and resolved by the worker. `project`: the user's checkout
    (shared/project.py); `${PATH}` stays in the runs' configurations for the worker to fill in.
    """
    text = _decode(text)
    budget = Budget()  # one for every reading of the file: the first, then one per run
    document = load_document(text, budget)
    locator = Locator(text)
    try:
        own_trainer = trainer_source(document, plugins, project) != "engine"
        search = parse_search(document, own_trainer=own_trainer)
    except SpecError as exc:  # keys: search.<name>, matrix.<key>[.<name>], or $filter
        raise locator.locate(exc, parent="matrix" if exc.key == FILTER_KEY else None) from None
    if search is not None and search.samples:
        return _parse_sampled(text, document, locator, search, plugins, project)
    matrix = _check_top_matrix(document, locator, max_combinations)
    keys = [k for k in (matrix or {}) if k != FILTER_KEY]
    keeps_path = "PATH" not in keys
    if keeps_path and project is None and PATH_PLACEHOLDER in text:
        line = text.count("\n", 0, text.index(PATH_PLACEHOLDER)) + 1
        raise SpecError(
            "${PATH} stands for your project's root: set SWEEPS_PROJECT_ROOT to its checkout",
            line=line,
        )
    if matrix is not None:
        # Names do not depend on the entry: check every ${...} of the file once, comments too.
        check_names(text, [*keys, *RESERVED, *(["PATH"] if keeps_path else [])])
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
    if search is not None:  # grid: the first `trials` entries, in enumeration order
        search = dataclasses.replace(
            search, trials=min(search.trials or len(entries), len(entries))
        )
        entries = entries[: search.trials]
    # Per run, each top-level key's substituted text is loaded once across runs (sections.py).
    sections = (
        SectionLoader.of(template, budget) if matrix is not None and len(entries) > 1 else None
    )
    runs = [
        _build_run(
            template,
            entry,
            matrix=document.get("matrix"),
            plugins=plugins,
            project=project,
            budget=budget,
            sections=sections,
        )  # fmt: skip
        for entry in entries
    ]  # fmt: skip
    total = count_combinations(matrix) if matrix is not None else 1
    return SweepSpec(yaml_text=text, matrix_keys=keys, combinations=total, runs=runs, search=search)


def _parse_sampled(
    text: str,
    document: dict[str, Any],
    locator: Locator,
    search: Search,
    plugins: tuple[str, ...],
    project: Project | None,
) -> SweepSpec:
    """A random or tpe sweep: no runs up front; a few points are built to validate the file."""
    check_names(text, [*search.space, *RESERVED])
    template = _without_matrix_block(text, locator)
    matrix = document.get("matrix")
    probes = [
        _build_run(template, search.entry(n, p), matrix=matrix, plugins=plugins, project=project)
        for n, p in enumerate(probe_points(search), start=1)
    ]
    return SweepSpec(
        yaml_text=text, matrix_keys=list(search.space), combinations=0, search=search,
        probes=probes,
    )  # fmt: skip


def build_trial(
    text: str, entry: MatrixEntry, *, plugins: tuple[str, ...] = (), project: Project | None = None
) -> RunSpec:
    """One trial of a stored search sweep (SpecError when this point breaks a rule)."""
    template, matrix = _template(text)
    return _build_run(template, entry, matrix=matrix, plugins=plugins, project=project)


def grid_entries(text: str) -> list[MatrixEntry]:
    """The matrix entries of a stored sweep, `$filter` applied, in enumeration order."""
    return expand_matrix(_template(text)[1])


@lru_cache(maxsize=16)
def _template(text: str) -> tuple[str, Any]:
    """A stored sweep's text with the matrix blanked, and its matrix (kept across trials)."""
    return _without_matrix_block(text, Locator(text)), load_document(text).get("matrix")


def _check_top_matrix(
    document: dict[str, Any], locator: Locator, max_combinations: int
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
        try:
            text = decode_utf8(text)
        except NotUtf8 as exc:
            raise SpecError(
                f"the file is not UTF-8: byte 0x{exc.byte:02x} at offset {exc.offset}",
                line=exc.line,
            ) from None
    else:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            line = text.count("\n", 0, exc.start) + 1
            raise SpecError(
                f"the file is not valid Unicode at offset {exc.start}", line=line
            ) from None
    text = text.removeprefix("\ufeff")
    # A `|` block on the last line keeps its line break only if the file has one; without it
    # a one-line block would read as plain text, not code (FORMAT.md: a block is code).
    return text if not text or text.endswith("\n") else text + "\n"


def _without_matrix_block(text: str, locator: Locator) -> str:
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


def _build_run(
    template: str,
    entry: MatrixEntry,
    *,
    matrix: Any,
    plugins: tuple[str, ...] = (),
    project: Project | None = None,
    budget: Budget | None = None,
    sections: SectionLoader | None = None,
) -> RunSpec:
    label = f"{entry.matrix_id} ({entry.slug})" if entry.slug else None
    # ${PATH} is left for the worker: its checkout may live elsewhere than the API's.
    variables = {"PATH": PATH_PLACEHOLDER, **entry.variables()}
    loaded = sections.load(variables) if sections is not None else None
    try:
        if loaded is not None:
            text, config = loaded
        else:
            no_matrix = matrix is None or matrix == {}
            text = template if no_matrix else substitute(template, variables)
            config = load_document(text, budget)
        if "matrix" in config:
            config["matrix"] = matrix
        check_config(config, Locator(text), plugins, project)
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
        settings=RunSettings.of_checked(config),
    )
