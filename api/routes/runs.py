"""One run: its details, cancelling it, its learning curves and its trained model."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse

from api.deps import CurrentToken, SessionDep, SettingsDep, require_token
from api.errors import AUTH_RESPONSES, InvalidInput
from api.etag import REVALIDATE, is_fresh, make_etag, not_modified
from api.params import RunId
from api.schemas import MetricPoint, MetricSeries, Problem, RunCancelOut, RunDetail
from shared.domain import access, metrics, reads
from shared.domain import runs as run_state
from shared.domain.model_files import open_model_file
from shared.domain.versions import metrics_version
from shared.metric_keys import METRIC_KEYS

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
    values = metrics.latest_metrics(session, run_id)
    latest = {key: MetricPoint(step=step, value=value) for key, (step, value) in values.items()}
    odd = {key: metrics.non_finite_name(value) for key, (_, value) in values.items()}
    non_finite = {key: name for key, name in odd.items() if name is not None}
    ours = set(RunDetail.model_fields) - {"latest", "non_finite"}
    fields = {name: getattr(run, name) for name in ours}
    return RunDetail.model_validate({**fields, "latest": latest, "non_finite": non_finite})


@router.post(
    "/runs/{run_id}/cancel",
    response_model=RunCancelOut,
    responses={**_NOT_FOUND, 409: {"model": Problem, "description": "the run has finished"}},
)
def cancel_run(run_id: RunId, session: SessionDep, token: CurrentToken) -> RunCancelOut:
    """Cancel a queued run now, or ask a running one to stop at its next step (409 if done)."""
    access.check_may_change_run(session, token, run_id)
    return RunCancelOut.model_validate(run_state.cancel_run(session, run_id))


def _split_keys(keys: list[str] | None) -> list[str] | None:
    if not keys:
        return None
    wanted = [k.strip() for item in keys for k in item.split(",") if k.strip()]
    return list(dict.fromkeys(wanted)) or None


_METRICS_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_NOT_FOUND,
    200: {
        "description": "the series; `ETag` names this version of them",
        "headers": {"ETag": {"description": "send it back as If-None-Match to revalidate"}},
    },
    304: {"description": "Not Modified: the series are those of the If-None-Match ETag"},
    422: {"model": Problem, "description": "unknown metric key"},
}


@router.get("/runs/{run_id}/metrics", response_model=MetricSeries, responses=_METRICS_RESPONSES)
def run_metrics(
    run_id: RunId,
    request: Request,
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
) -> Response:
    """Learning curves as [inputs seen, value] pairs per key; `after` polls, `max_points` thins.

    A NaN or infinite value is `null` in `series` (JSON has no such numbers) and is named in
    `non_finite`. Answers carry an ETag: with `If-None-Match` set to it, the answer is
    `304 Not Modified` while the series are unchanged (a finished run's never change).
    """
    source = reads.source_id(session, run_id)
    etag = make_etag(request, metrics_version(session, [source]))
    if is_fresh(request, etag):
        return not_modified(etag)
    wanted = _split_keys(keys)
    if wanted:
        known = set(METRIC_KEYS) | set(metrics.metric_keys(session, run_id))
        unknown = [k for k in wanted if k not in known]
        if unknown:
            raise InvalidInput(
                f"unknown metric key {unknown[0][:100]!r}; known keys: {', '.join(sorted(known))}"
            )
    series = metrics.metric_series(
        session, run_id, keys=wanted, after=after, max_points=max_points, source=source
    )
    # Serialised straight from the driver's tuples in MetricSeries' shape; validating
    # thousands of points again would cost more than reading them (orjson writes NaN and
    # infinities as null).
    body = orjson.dumps(
        {
            "run_id": run_id,
            "source_run_id": series.source_id,
            "series": series.points,
            "last_step": series.last_step,
            "non_finite": series.non_finite,
        }
    )
    headers = {"ETag": etag, "Cache-Control": REVALIDATE}
    return Response(body, media_type="application/json", headers=headers)


STREAM_BLOCK_BYTES = 1 << 20  # a model file is sent in blocks of this size


@router.get(
    "/runs/{run_id}/checkpoint",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
            "description": "a torch file: {state_dict, config, format}; "
            "`worker.engine.load_model` rebuilds the model from it",
        },
        404: {"model": Problem, "description": "no such run, or it has no trained model (why)"},
    },
)
def run_checkpoint(run_id: RunId, session: SessionDep, settings: SettingsDep) -> StreamingResponse:
    """The trained model of a run that succeeded: weights and resolved configuration."""
    found = open_model_file(session, run_id, settings.artifact_location)

    def chunks() -> Any:
        with found.stream as stream:
            while chunk := stream.read(STREAM_BLOCK_BYTES):
                yield chunk

    headers = {
        "Content-Disposition": f'attachment; filename="{found.filename}"',
        "X-Sweeps-Source-Run": str(found.source_id),
    }
    return StreamingResponse(chunks(), media_type="application/octet-stream", headers=headers)
