"""One run: its details, cancelling it, and its learning curves."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from api.deps import SessionDep, require_token
from api.errors import AUTH_RESPONSES, InvalidInput
from api.params import RunId
from api.schemas import MetricPoint, MetricSeries, Problem, RunCancelOut, RunDetail
from shared.domain import commands, metrics, reads
from shared.table import METRIC_KEYS

router = APIRouter(
    tags=["runs"],
    dependencies=[Depends(require_token)],
    responses=AUTH_RESPONSES,
)

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "no run with that id"}
}


@router.get("/runs/{run_id}", response_model=RunDetail, responses=_NOT_FOUND)
def get_run(run_id: RunId, session: SessionDep) -> RunDetail:
    """A run: configuration, status, attempts, timings, host, device, provenance, error."""
    run = reads.get_run(session, run_id)
    latest = {
        key: MetricPoint(step=step, value=value)
        for key, (step, value) in metrics.latest_metrics(session, run_id).items()
    }
    fields = {name: getattr(run, name) for name in RunDetail.model_fields if name != "latest"}
    return RunDetail.model_validate({**fields, "latest": latest})


@router.post(
    "/runs/{run_id}/cancel",
    response_model=RunCancelOut,
    responses={**_NOT_FOUND, 409: {"model": Problem, "description": "the run has finished"}},
)
def cancel_run(run_id: RunId, session: SessionDep) -> RunCancelOut:
    """Cancel a queued run now, or ask a running one to stop at its next step (409 if done)."""
    return RunCancelOut.model_validate(commands.cancel_run(session, run_id))


def _split_keys(keys: list[str] | None) -> list[str] | None:
    if not keys:
        return None
    wanted = [k.strip() for item in keys for k in item.split(",") if k.strip()]
    return list(dict.fromkeys(wanted)) or None


@router.get(
    "/runs/{run_id}/metrics",
    response_model=MetricSeries,
    responses={**_NOT_FOUND, 422: {"model": Problem, "description": "unknown metric key"}},
)
def run_metrics(
    run_id: RunId,
    session: SessionDep,
    keys: Annotated[
        list[str] | None, Query(description="metric keys, comma-separated (default: all)")
    ] = None,
    after: Annotated[
        int | None, Query(ge=0, le=2**62, description="only points with inputs > after")
    ] = None,
    max_points: Annotated[
        int | None, Query(ge=2, le=100_000, description="downsample each series to this many")
    ] = None,
) -> MetricSeries:
    """Learning curves as [inputs seen, value] pairs per key; `after` polls, `max_points` thins."""
    wanted = _split_keys(keys)
    if wanted:
        known = set(METRIC_KEYS) | set(metrics.metric_keys(session, run_id))
        unknown = [k for k in wanted if k not in known]
        if unknown:
            raise InvalidInput(
                f"unknown metric key {unknown[0][:100]!r}; known keys: {', '.join(sorted(known))}"
            )
    source, series = metrics.metric_series(
        session, run_id, keys=wanted, after=after, max_points=max_points
    )
    last = max((points[-1][0] for points in series.values() if points), default=None)
    return MetricSeries.model_validate(
        {"run_id": run_id, "source_run_id": source, "series": series, "last_step": last}
    )
