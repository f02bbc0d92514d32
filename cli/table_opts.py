"""nn-experiments' table options on `sweeps table`/`compare`/`report`, with its option names.

The original takes several names after one option (`-sc a b`); Typer takes one value per
option, so repeat it (`-sc a -sc -b`). A name is a header or a metric key.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

IncludeOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--include-column", "-ic", help="add a column: any stored metric (train_loss) or header"
    ),
]
ExcludeOpt = Annotated[
    list[str] | None,
    typer.Option("--exclude-column", "-ec", help="leave a column out (header or key)"),
]
SortOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--sort-column",
        "--sort",
        "-sc",
        help="sort by a column; repeat for more, the first deciding first; "
        "a leading or trailing '-' sorts it descending",
    ),
]
AverageOpt = Annotated[
    str | None,
    typer.Option(
        "--average-column",
        "-ac",
        help="a matrix key to average over, e.g. trial: one row per configuration",
    ),
]
AverageStdOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--average-column-std", "-acs", help="show this column as mean ± std (repeatable)"
    ),
]


def table_query(
    include: list[str] | None,
    exclude: list[str] | None,
    sort: list[str] | None,
    average: str | None,
    average_std: list[str] | None,
) -> dict[str, Any]:
    """The query parameters of GET .../table and /compare (None where not given)."""
    return {
        "include": include or None,
        "exclude": exclude or None,
        "sort": sort or None,
        "average": average,
        "average_std": average_std or None,
    }
