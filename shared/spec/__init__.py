"""The sweep spec: parse, expand and validate nn-experiments YAML. Pure Python, no torch."""

from .errors import SpecError
from .extends import Loader, merge_extends, parse_with_extends
from .matrix import MatrixEntry, expand_matrix, make_slug
from .parse import RunSpec, Sweep, config_hash, is_code, parse_sweep
from .safe_filter import evaluate_filter

__all__ = [
    "Loader",
    "MatrixEntry",
    "RunSpec",
    "SpecError",
    "Sweep",
    "config_hash",
    "evaluate_filter",
    "expand_matrix",
    "is_code",
    "make_slug",
    "merge_extends",
    "parse_sweep",
    "parse_with_extends",
]
