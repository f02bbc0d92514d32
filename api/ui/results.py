"""GET /ui/sweeps/{id}/report.zip: the sweep's write-up for a logged-in browser."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from api.deps import SessionDep
from api.params import SweepId
from api.routes.reports import zip_response
from api.table_params import table_options
from api.ui.routes import PageUser
from shared.domain.reports import sweep_report
from shared.table_options import TableOptions

router = APIRouter(prefix="/ui", include_in_schema=False)


@router.get("/sweeps/{sweep_id}/report.zip")
def sweep_report_download(
    db: SessionDep,
    _: PageUser,
    sweep_id: SweepId,
    options: Annotated[TableOptions, Depends(table_options)],
) -> Response:
    """The same zip as GET /sweeps/{id}/report (the table options in the query)."""
    return zip_response(sweep_report(db, sweep_id, options), sweep_id)
