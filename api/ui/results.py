"""The sweep page's downloads: its table (md, csv) and its write-up (zip), with table options."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response

from api.deps import SessionDep
from api.params import SweepId
from api.routes.reports import zip_response
from api.table_params import Options
from api.ui.routes import PageUser
from shared.domain.reports import sweep_report
from shared.domain.results import options_table
from shared.table_options import render as render_table

router = APIRouter(prefix="/ui", include_in_schema=False)


@router.get("/sweeps/{sweep_id}/table.{fmt}")
def sweep_table_file(
    db: SessionDep, _: PageUser, sweep_id: SweepId, fmt: str, options: Options
) -> Response:
    if fmt not in ("md", "csv"):
        raise HTTPException(404, f"no table format {fmt!r}; use table.md or table.csv")
    table = options_table(db, options, sweep_ids=[sweep_id])  # a 422 if the options do not fit
    body = render_table(table, fmt, options)
    assert isinstance(body, str)  # md and csv are text
    media = "text/markdown" if fmt == "md" else "text/csv"
    disposition = f'attachment; filename="sweep-{sweep_id}.{fmt}"'
    return Response(
        body, media_type=f"{media}; charset=utf-8", headers={"Content-Disposition": disposition}
    )


@router.get("/sweeps/{sweep_id}/report.zip")
def sweep_report_download(
    db: SessionDep, _: PageUser, sweep_id: SweepId, options: Options
) -> Response:
    """The same zip as GET /sweeps/{id}/report (the table options in the query)."""
    return zip_response(sweep_report(db, sweep_id, options), sweep_id)
