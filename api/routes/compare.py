"""The comparison table of one sweep, or of any runs and sweeps together, as JSON/MD/CSV."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from api.deps import SessionDep, require_token
from api.errors import AUTH_RESPONSES, InvalidInput
from api.params import IdsQuery, SweepId, parse_ids
from api.schemas import Problem, TableOut
from api.table_params import Options
from shared.domain.results import options_table
from shared.results_table import page_rows
from shared.table_options import TableOptions
from shared.table_options import render as render_table

router = APIRouter(
    tags=["tables"],
    dependencies=[Depends(require_token)],
    responses=AUTH_RESPONSES,
)

Format = Annotated[Literal["json", "md", "csv"], Query(description="json, md or csv")]
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {
            "text/markdown": {"schema": {"type": "string"}},
            "text/csv": {"schema": {"type": "string"}},
        },
        "description": "the table; JSON unless format=md or format=csv",
    },
    404: {"model": Problem, "description": "a sweep or run does not exist"},
    422: {
        "model": Problem,
        "description": "an unknown column, an average key not in the matrix, a std column "
        "that is not numeric, or malformed ids",
    },
}


Limit = Annotated[
    int | None,
    Query(
        ge=1,
        le=100_000,
        description="rows per page; JSON defaults to 500 (see `total`), md and csv to every row",
    ),
]
Offset = Annotated[int, Query(ge=0, le=2**31 - 1, description="rows to skip, after sorting")]
JSON_PAGE = 500


def render(
    session: SessionDep,
    fmt: str,
    options: TableOptions,
    *,
    sweep_ids: list[int] = (),  # type: ignore[assignment]
    run_ids: list[int] = (),  # type: ignore[assignment]
    limit: int | None = None,
    offset: int = 0,
) -> Response:
    table = options_table(session, options, sweep_ids=sweep_ids, run_ids=run_ids)
    if limit is None and fmt == "json":
        limit = JSON_PAGE
    page = page_rows(table, limit, offset)
    out = render_table(page, fmt, options)
    if fmt == "md":
        return PlainTextResponse(out, media_type="text/markdown; charset=utf-8")
    if fmt == "csv":
        return PlainTextResponse(out, media_type="text/csv; charset=utf-8")
    # Built by to_json in TableOut's shape; returned as is, since validating a 1,000-row
    # table again would cost more than building it.
    assert isinstance(out, dict)
    out.update(total=page.total, offset=offset)  # an averaged table's document too
    return JSONResponse(out)


@router.get("/sweeps/{sweep_id}/table", response_model=TableOut, responses=_RESPONSES)
def sweep_table(
    sweep_id: SweepId,
    session: SessionDep,
    options: Options,
    format: Format = "json",
    limit: Limit = None,
    offset: Offset = 0,
) -> Any:
    """The seed's comparison table for one sweep: parameters, losses, accuracies, size, time.

    With `average=trial`: one row per configuration, the mean (and, for `average_std`
    columns, the std) over the trials that finished; JSON rows carry mean, std and n. Paged by
    `limit`/`offset` after sorting; best values are the whole table's.
    """
    return render(session, format, options, sweep_ids=[sweep_id], limit=limit, offset=offset)


@router.get("/compare", response_model=TableOut, responses=_RESPONSES)
def compare(
    session: SessionDep,
    options: Options,
    runs: Annotated[str | None, IdsQuery(description="run ids, e.g. 1,2,3")] = None,
    sweeps_: Annotated[
        str | None, IdsQuery(alias="sweeps", description="sweep ids, e.g. 4,5")
    ] = None,
    format: Format = "json",
    limit: Limit = None,
    offset: Offset = 0,
) -> Any:
    """The same table across sweeps: the listed runs plus every run of the listed sweeps."""
    run_ids = parse_ids(runs, "runs")
    sweep_ids = parse_ids(sweeps_, "sweeps")
    if not run_ids and not sweep_ids:
        raise InvalidInput("give runs=1,2 and/or sweeps=3 to compare")
    return render(
        session, format, options, sweep_ids=sweep_ids, run_ids=run_ids, limit=limit, offset=offset
    )
