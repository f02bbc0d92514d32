"""The sweep file format: parse, expand and validate nn-experiments YAML. Pure Python, no torch."""

from .config_checks import is_code
from .errors import SpecError
from .extends import Loader, merge_extends, parse_with_extends
from .matrix import MatrixEntry, expand_matrix, make_slug
from .parse import RunSpec, SweepSpec, config_hash, parse_sweep
from .run_config import RunConfig, RunSettings
from .safe_filter import evaluate_filter

__all__ = [
    "Loader",
    "MatrixEntry",
    "RunConfig",
    "RunSettings",
    "RunSpec",
    "SpecError",
    "SweepSpec",
    "config_hash",
    "evaluate_filter",
    "expand_matrix",
    "is_code",
    "make_slug",
    "merge_extends",
    "parse_sweep",
    "parse_with_extends",
]
