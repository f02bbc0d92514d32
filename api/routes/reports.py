"""GET /sweeps/{id}/report: the write-up of a sweep as a zip (Markdown, CSV, PNG curves)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response

from api.deps import SessionDep, require_token
from api.errors import AUTH_RESPONSES
from api.params import SweepId
from api.schemas import Problem
from api.table_params import Options
from shared.domain.reports import Report, sweep_report

router = APIRouter(
    tags=["tables"],
    dependencies=[Depends(require_token)],
    responses=AUTH_RESPONSES,
)

_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
        "description": "report.md, table.csv, sweep.yaml and plots/<metric>.png",
    },
    404: {"model": Problem, "description": "the sweep does not exist"},
    422: {"model": Problem, "description": "a table option that does not fit the table"},
}


@router.get("/sweeps/{sweep_id}/report", response_class=Response, responses=_RESPONSES)
def sweep_report_zip(
    sweep_id: SweepId,
    session: SessionDep,
    options: Options,
) -> Response:
    """The sweep's write-up: its table (with the table options), learning curves, its file."""
    return zip_response(sweep_report(session, sweep_id, options), sweep_id)


def zip_response(report: Report, sweep_id: int) -> Response:
    """The report as a zip download (also the UI's)."""
    filename = f"sweep-{sweep_id}-report.zip"
    return Response(
        report.zip_bytes(),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
