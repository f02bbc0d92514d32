"""The table options as query parameters (repeat one to give several: `sort=a&sort=-b`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query

from shared.table_options import TableOptions


def table_options(
    include: Annotated[
        list[str] | None,
        Query(description="more columns: a stored metric key (train_loss) or a header"),
    ] = None,
    exclude: Annotated[list[str] | None, Query(description="columns to leave out")] = None,
    sort: Annotated[
        list[str] | None,
        Query(
            description="columns to sort by, the first deciding first; a leading or trailing "
            "'-' sorts that one descending"
        ),
    ] = None,
    average: Annotated[
        str | None,
        Query(max_length=200, description="a matrix key to average over, e.g. trial"),
    ] = None,
    average_std: Annotated[
        list[str] | None,
        Query(description="columns shown as mean ± std in an averaged table"),
    ] = None,
) -> TableOptions:
    """The table options of nn-experiments' `results` command (shared/table_options.py)."""
    return TableOptions.of(include, exclude, sort, average, average_std)


# A route's table options, read from its query.
Options = Annotated[TableOptions, Depends(table_options)]
