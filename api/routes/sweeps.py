"""POST /sweeps and friends: submit, preview, list, inspect, cancel and retry sweeps."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import ValidationError

from api.deps import CurrentToken, SessionDep, SettingsDep, read_body, require_token
from api.errors import AUTH_RESPONSES, BadRequest, InvalidInput, UnsupportedMediaType
from api.params import SweepId
from api.schemas import (
    PRINTABLE,
    PreviewRun,
    Problem,
    RunBrief,
    RunSummary,
    SearchOut,
    SweepCancelled,
    SweepCreated,
    SweepDetail,
    SweepName,
    SweepOut,
    SweepPage,
    SweepPreview,
    SweepRetried,
    SweepSubmission,
)
from shared import queue
from shared.db.models import RunStatus, SweepStatus
from shared.db.session import commit
from shared.domain import access, reads, retry, search, submit, trials
from shared.domain import runs as run_state
from shared.domain.submit import check_sweep_name, parse_submission, sweep_name
from shared.plugins import parse_options
from shared.sweepfile.encoding import NotUtf8, decode_utf8, encodable

router = APIRouter(
    tags=["sweeps"],
    dependencies=[Depends(require_token)],
    responses=AUTH_RESPONSES,
)

YAML_TYPES = ("application/x-yaml", "application/yaml", "text/yaml", "text/x-yaml", "text/plain")
_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "the sweep file: YAML as text, or JSON {yaml, name, filename, files}"
        " (files: the bases its $extends names, by name)",
        "content": {
            **{t: {"schema": {"type": "string"}} for t in ("application/x-yaml", "text/plain")},
            "application/json": {"schema": {"$ref": "#/components/schemas/SweepSubmission"}},
        },
    }
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "description": text}
    for code, text in [
        (400, "the body cannot be read (not UTF-8, broken JSON)"),
        (413, "the body is over SWEEPS_MAX_BODY_BYTES"),
        (415, "unsupported Content-Type"),
        (422, "the sweep file is invalid: message, line, column, key, value"),
    ]
}
Body = Annotated[bytes, Depends(read_body)]
RUNS_PAGE = 1000  # runs in GET /sweeps/{id} unless `limit` says otherwise
_ONE_STATUS = "(?:" + "|".join(s.value for s in RunStatus) + ")"
STATUS_LIST = f"^(?:{_ONE_STATUS}(?:,{_ONE_STATUS})*)?$"  # documented; parse_statuses checks


def NameQuery(**kwargs: Any) -> Any:  # noqa: N802 - used like fastapi.Query
    """The `name` query parameter; `check_sweep_name` refuses what the pattern documents."""
    return Query(json_schema_extra={"pattern": PRINTABLE}, **kwargs)


def _decode(body: bytes) -> str:
    try:
        return decode_utf8(body)
    except NotUtf8 as exc:
        raise BadRequest(
            f"the body is not UTF-8: byte 0x{exc.byte:02x} at offset {exc.offset} "
            f"(line {exc.line}); save the file as UTF-8"
        ) from None


@dataclass(frozen=True)
class Submission:
    text: str
    name: str | None
    filename: str = "sweep.yaml"
    files: dict[str, str] = field(default_factory=dict)  # $extends bases by name


def read_submission(request: Request, body: bytes, name: str | None) -> Submission:
    """The YAML (and its bases) from a YAML or JSON body; 400/415/422 when it cannot be read."""
    media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if media == "application/json":
        text = _decode(body)
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise BadRequest(f"the body is not valid JSON: {exc}") from None
        try:
            submission = SweepSubmission.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()
            )
            raise InvalidInput(
                f'expected JSON {{"yaml": "...", "name": "..."}}: {problems}'
            ) from None
        texts = [submission.yaml, *submission.files.values()]
        if any("\x00" in text or not encodable(text) for text in texts):
            raise BadRequest("'yaml' or 'files' hold characters that are not valid UTF-8 text")
        return Submission(
            submission.yaml,
            check_sweep_name(submission.name) or check_sweep_name(name),
            submission.filename,
            submission.files,
        )
    if media in YAML_TYPES or not media:
        return Submission(_decode(body), check_sweep_name(name))
    raise UnsupportedMediaType(
        f"Content-Type {media!r} is not supported: send the YAML as application/x-yaml or "
        'text/plain, or JSON {"yaml": ..., "name": ...} as application/json'
    )


@router.post(
    "/sweeps",
    status_code=201,
    response_model=SweepCreated,
    openapi_extra=_BODY_DOC,
    responses=_ERRORS,
)
def create_sweep(
    request: Request,
    body: Body,
    session: SessionDep,
    settings: SettingsDep,
    token: CurrentToken,
    force: Annotated[bool, Query(description="train again even where results exist")] = False,
    name: Annotated[SweepName | None, NameQuery(description="sweep name")] = None,
) -> SweepCreated:
    """Submit a sweep file: store its runs and queue them (results that exist are reused)."""
    submission = read_submission(request, body, name)
    spec = parse_submission(
        submission.text, settings, filename=submission.filename, files=submission.files
    )
    submitted = submit.submit_sweep(
        session,
        spec,
        queue.sender(settings.broker_url),
        name=submission.name,
        force=force,
        owner=token,
    )
    created = SweepCreated(
        id=submitted.sweep.id,
        name=submitted.sweep.name,
        status=submitted.sweep.status.value,
        runs=[RunBrief.model_validate(r) for r in submitted.runs],
        enqueued=0,
    )
    # Committed here, not at the end of the request: the reply says what was sent.
    outcome = commit(session)
    return created.model_copy(update={"enqueued": len(outcome.sent), "warnings": outcome.warnings})


@router.post(
    "/sweeps/preview", response_model=SweepPreview, openapi_extra=_BODY_DOC, responses=_ERRORS
)
def preview_sweep(
    request: Request,
    body: Body,
    session: SessionDep,
    settings: SettingsDep,
    force: Annotated[bool, Query(description="as POST /sweeps?force=true")] = False,
    name: Annotated[SweepName | None, NameQuery()] = None,
) -> SweepPreview:
    """Validate and expand a sweep file without storing anything: runs, slugs, hashes, reuse."""
    submission = read_submission(request, body, name)
    spec = parse_submission(
        submission.text, settings, filename=submission.filename, files=submission.files
    )
    first = search.preview_specs(spec, **parse_options(settings))
    plans = submit.plan_specs(session, first, force=force)
    runs = [
        PreviewRun(
            matrix_id=p.spec.matrix_id,
            slug=p.spec.slug,
            experiment_name=p.spec.experiment_name,
            params=submit.json_safe(p.spec.params),
            config_hash=p.spec.config_hash,
            would_reuse=p.reuse_from_id is not None,
            reuse_from_id=p.reuse_from_id,
            link_to_id=p.link_to_id,
        )
        for p in plans
    ]
    reused = sum(r.would_reuse or r.link_to_id is not None for r in runs)
    return SweepPreview(
        name=sweep_name(spec, submission.name),
        matrix_keys=spec.matrix_keys,
        search=spec.search.describe() if spec.search else None,
        runs=runs,
        would_train=len(runs) - reused,
        would_reuse=reused,
        merged_yaml=spec.yaml_text if spec.merged_from else None,
    )


def _summary(summary: reads.SweepSummary) -> dict[str, Any]:
    sweep = summary.sweep
    return {
        "id": sweep.id,
        "name": sweep.name,
        "status": sweep.status.value,
        "created_at": sweep.created_at,
        "finished_at": sweep.finished_at,
        "run_count": summary.run_count,
        "counts": summary.counts,
        "progress": summary.progress,
        # Kept after a held sweep is cancelled (retry still asks for a file), shown while held.
        "hold_reason": sweep.hold_reason if sweep.status == SweepStatus.HELD else None,
    }


@router.get("/sweeps", response_model=SweepPage)
def list_sweeps(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> SweepPage:
    """Sweeps, newest first, one page at a time, with status counts and progress."""
    items, total = reads.list_sweeps(session, limit=limit, offset=offset)
    summaries = [SweepOut(**_summary(s)) for s in reads.summarize(session, items)]
    return SweepPage(items=summaries, total=total, limit=limit, offset=offset)


def parse_statuses(text: str | None) -> list[RunStatus]:
    """`queued,running` -> statuses; 422 naming a word that is not one."""
    words = [w.strip() for w in (text or "").split(",") if w.strip()]
    known = {s.value: s for s in RunStatus}
    unknown = [w for w in words if w not in known]
    if unknown:
        raise InvalidInput(f"unknown run status {unknown[0]!r}; choose from {', '.join(known)}")
    return [known[w] for w in words]


@router.get(
    "/sweeps/{sweep_id}",
    response_model=SweepDetail,
    responses={
        404: {"model": Problem},
        422: {"model": Problem, "description": "a page out of range or an unknown run status"},
    },
)
def get_sweep(
    sweep_id: SweepId,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=5000, description="runs per page")] = RUNS_PAGE,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    status: Annotated[
        str | None,
        Query(
            max_length=200,
            json_schema_extra={"pattern": STATUS_LIST},
            description="only runs of these statuses, comma-separated: failed,held",
        ),
    ] = None,
) -> SweepDetail:
    """One sweep: status counts, progress, its file, and a page of its runs by id."""
    sweep = reads.get_sweep(session, sweep_id)
    (summary,) = reads.summarize(session, [sweep])
    statuses = parse_statuses(status)
    rows = reads.sweep_runs(session, sweep_id, limit=limit, offset=offset, statuses=statuses)
    total = sum(summary.counts.get(s.value, 0) for s in statuses) if statuses else summary.run_count
    progress = trials.search_progress(session, sweep_id, sweep.search)
    return SweepDetail(
        **_summary(summary),
        matrix_keys=sweep.matrix_keys,
        yaml_text=sweep.yaml_text,
        held_at=sweep.held_at,
        search=SearchOut.model_validate(progress.to_json()) if progress else None,
        runs=[RunSummary.model_validate(r) for r in rows],
        runs_total=total,
        runs_limit=limit,
        runs_offset=offset,
    )


@router.post(
    "/sweeps/{sweep_id}/cancel",
    response_model=SweepCancelled,
    responses={404: {"model": Problem}, 409: {"model": Problem, "description": "all finished"}},
)
def cancel_sweep(sweep_id: SweepId, session: SessionDep, token: CurrentToken) -> SweepCancelled:
    """Cancel queued runs now and ask running ones to stop at their next step (owner or admin)."""
    access.check_may_change(session, token, sweep_id)
    result = run_state.cancel_sweep(session, sweep_id)
    return SweepCancelled(
        sweep_id=sweep_id, cancelled=result.cancelled, cancel_requested=result.cancel_requested
    )


@router.post(
    "/sweeps/{sweep_id}/retry",
    response_model=SweepRetried,
    openapi_extra={"requestBody": {**_BODY_DOC["requestBody"], "required": False}},
    responses={
        404: {"model": Problem},
        409: {"model": Problem, "description": "held: send the fixed file, or force=true"},
        422: {"model": Problem, "description": "the file is invalid or gives other runs"},
    },
)
def retry_sweep(
    sweep_id: SweepId,
    request: Request,
    body: Body,
    session: SessionDep,
    settings: SettingsDep,
    token: CurrentToken,
    force: Annotated[
        bool, Query(description="release a held sweep's runs unchanged, without a file")
    ] = False,
) -> SweepRetried:
    """Queue held, failed, cancelled and pruned runs again, resuming from checkpoints (owner or
    admin). A held sweep needs the fixed file in the body (as for POST /sweeps; it must give
    the same runs, and replaces the configuration of those that have not trained) or `force`.
    """
    access.check_may_change(session, token, sweep_id)
    spec = None
    if body.strip():
        submission = read_submission(request, body, None)
        spec = parse_submission(
            submission.text, settings, filename=submission.filename, files=submission.files
        )
    refitted = retry.refit(session, sweep_id, spec) if spec is not None else 0
    ids = retry.retry_sweep(session, sweep_id, force=force or spec is not None)
    run_state.enqueue_after_commit(session, ids, queue.sender(settings.broker_url))
    outcome = commit(session)  # here, so that the reply says what was sent
    return SweepRetried(
        sweep_id=sweep_id,
        retried=ids,
        refitted=refitted,
        enqueued=len(outcome.sent),
        warnings=outcome.warnings,
    )
