"""POST /sweeps and friends: submit, preview, list, inspect, cancel and retry sweeps."""

from __future__ import annotations

import json
import logging
import os.path
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import ValidationError
from sqlalchemy.orm import Session

from api.deps import SessionDep, SettingsDep, read_body, require_token
from api.errors import AUTH_RESPONSES, BadRequest, InvalidInput, UnsupportedMediaType
from api.schemas import (
    PreviewRun,
    Problem,
    RunBrief,
    RunSummary,
    SweepCancelled,
    SweepCreated,
    SweepDetail,
    SweepPage,
    SweepPreview,
    SweepRetried,
    SweepSubmission,
    SweepSummary,
)
from shared import queue
from shared.db import sweeps
from shared.db.models import RunStatus
from shared.plugins import plugin_modules
from shared.settings import Settings
from shared.spec import SpecError, parse_with_extends
from shared.spec import Sweep as SweepSpec

log = logging.getLogger("sweeps.api")
router = APIRouter(
    tags=["sweeps"],
    dependencies=[Depends(require_token)],
    responses=AUTH_RESPONSES,
)

SweepId = Annotated[int, Path(ge=1, le=2**31 - 1, description="sweep id")]
YAML_TYPES = ("application/x-yaml", "application/yaml", "text/yaml", "text/x-yaml", "text/plain")
_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "the sweep file: YAML as text, or JSON {yaml, name, filename, files}"
        " (files: the bases its $extends names, by name)",
        "content": {
            **{t: {"schema": {"type": "string"}} for t in ("application/x-yaml", "text/plain")},
            # Inlined: a $ref to components would dangle, since no route declares the model.
            "application/json": {"schema": SweepSubmission.model_json_schema()},
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


def _decode_utf8(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = body.count(b"\n", 0, exc.start) + 1
        raise BadRequest(
            f"the body is not UTF-8: byte 0x{body[exc.start]:02x} at offset {exc.start} "
            f"(line {line}); save the file as UTF-8"
        ) from None


def _check_name(name: str | None) -> str | None:
    if name is None:
        return None
    if len(name) > 200 or any(ord(ch) < 32 or 0xD800 <= ord(ch) <= 0xDFFF for ch in name):
        raise InvalidInput("'name' must be at most 200 printable characters")
    return name.strip() or None


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
        text = _decode_utf8(body)
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
        if any("\x00" in text or not _encodable(text) for text in texts):
            raise BadRequest("'yaml' or 'files' hold characters that are not valid UTF-8 text")
        return Submission(
            submission.yaml,
            _check_name(submission.name) or _check_name(name),
            submission.filename,
            submission.files,
        )
    if media in YAML_TYPES or not media:
        return Submission(_decode_utf8(body), _check_name(name))
    raise UnsupportedMediaType(
        f"Content-Type {media!r} is not supported: send the YAML as application/x-yaml or "
        'text/plain, or JSON {"yaml": ..., "name": ...} as application/json'
    )


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse(
    text: str,
    settings: Settings,
    *,
    filename: str = "sweep.yaml",
    files: Mapping[str, str] | None = None,
) -> SweepSpec:
    """Validate and expand the file (its `$extends` bases from `files`); no code is run."""
    bases = {posixpath.normpath(k): v for k, v in (files or {}).items()}
    spec = parse_with_extends(
        text, filename, bases.get, max_runs=settings.max_runs,
        plugins=plugin_modules(settings.plugins),
    )  # fmt: skip
    if not spec.runs:  # valid per FORMAT.md, but a sweep of nothing is surely a mistake
        raise SpecError("the matrix gives no runs (an empty list, or a $filter that keeps none)",
                        key="matrix")  # fmt: skip
    for run in spec.runs:
        sweeps.check_storable(run)
    return spec


def default_name(spec: SweepSpec) -> str:
    """The experiment names' common prefix (the whole name for one run)."""
    names = [r.experiment_name for r in spec.runs]
    prefix = os.path.commonprefix(names) if names else ""
    return prefix.rstrip("_-/:. ") or "sweep"


def enqueue_after_commit(
    session: Session, settings: Settings, run_ids: list[int]
) -> tuple[int, list[str]]:
    """Commit, then send one task per run; runs the broker missed are left to the reconciler."""
    session.commit()
    sent: list[int] = []
    warnings: list[str] = []
    for run_id in run_ids:
        try:
            queue.enqueue_run(run_id, broker_url=settings.broker_url)
        except Exception as exc:  # noqa: BLE001 - any broker failure is handled the same way
            log.warning("enqueue failed for run %s: %s", run_id, type(exc).__name__)
            warnings.append(
                f"the task queue is unreachable ({type(exc).__name__}); "
                f"{len(run_ids) - len(sent)} queued runs will be sent by the reconciler"
            )
            break
        sent.append(run_id)
    sweeps.mark_enqueued(session, sent)
    return len(sent), warnings


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
    force: Annotated[bool, Query(description="train again even where results exist")] = False,
    name: Annotated[str | None, Query(max_length=200, description="sweep name")] = None,
) -> SweepCreated:
    """Submit a sweep file: store its runs and queue them (results that exist are reused)."""
    submission = read_submission(request, body, name)
    spec = parse(submission.text, settings, filename=submission.filename, files=submission.files)
    name = submission.name
    sweep, runs = sweeps.create_sweep(session, spec, name=name or default_name(spec), force=force)
    # A queued run linked to one training elsewhere gets no task (shared/db/links.py).
    queued = [r.id for r in runs if r.status == RunStatus.QUEUED and r.reused_from_id is None]
    enqueued, warnings = enqueue_after_commit(session, settings, queued)
    return SweepCreated(
        id=sweep.id,
        name=sweep.name,
        status=sweep.status.value,
        runs=[RunBrief.model_validate(r) for r in runs],
        enqueued=enqueued,
        warnings=warnings,
    )


@router.post(
    "/sweeps/preview", response_model=SweepPreview, openapi_extra=_BODY_DOC, responses=_ERRORS
)
def preview_sweep(
    request: Request,
    body: Body,
    session: SessionDep,
    settings: SettingsDep,
    force: Annotated[bool, Query(description="as POST /sweeps?force=true")] = False,
    name: Annotated[str | None, Query(max_length=200)] = None,
) -> SweepPreview:
    """Validate and expand a sweep file without storing anything: runs, slugs, hashes, reuse."""
    submission = read_submission(request, body, name)
    spec = parse(submission.text, settings, filename=submission.filename, files=submission.files)
    name = submission.name
    plans = sweeps.plan_runs(session, spec, force=force)
    runs = [
        PreviewRun(
            matrix_id=p.spec.matrix_id,
            slug=p.spec.slug,
            experiment_name=p.spec.experiment_name,
            params=sweeps.json_safe(p.spec.params),
            config_hash=p.spec.config_hash,
            would_reuse=p.reuse_from_id is not None,
            reuse_from_id=p.reuse_from_id,
            link_to_id=p.link_to_id,
        )
        for p in plans
    ]
    reused = sum(r.would_reuse or r.link_to_id is not None for r in runs)
    return SweepPreview(
        name=name or default_name(spec),
        matrix_keys=spec.matrix_keys,
        runs=runs,
        would_train=len(runs) - reused,
        would_reuse=reused,
        merged_yaml=spec.yaml_text if spec.merged_from else None,
    )


def _summary(summary: sweeps.SweepSummary) -> dict[str, Any]:
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
    }


@router.get("/sweeps", response_model=SweepPage)
def list_sweeps(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> SweepPage:
    """Sweeps, newest first, one page at a time, with status counts and progress."""
    items, total = sweeps.list_sweeps(session, limit=limit, offset=offset)
    summaries = [SweepSummary(**_summary(s)) for s in sweeps.summarize(session, items)]
    return SweepPage(items=summaries, total=total, limit=limit, offset=offset)


@router.get("/sweeps/{sweep_id}", response_model=SweepDetail, responses={404: {"model": Problem}})
def get_sweep(sweep_id: SweepId, session: SessionDep) -> SweepDetail:
    """One sweep: status counts, progress, its file and its runs."""
    sweep = sweeps.get_sweep(session, sweep_id)
    (summary,) = sweeps.summarize(session, [sweep])
    runs = [RunSummary.model_validate(r) for r in sweeps.sweep_runs(session, sweep_id)]
    return SweepDetail(
        **_summary(summary), matrix_keys=sweep.matrix_keys, yaml_text=sweep.yaml_text, runs=runs
    )


@router.post(
    "/sweeps/{sweep_id}/cancel",
    response_model=SweepCancelled,
    responses={404: {"model": Problem}, 409: {"model": Problem, "description": "all finished"}},
)
def cancel_sweep(sweep_id: SweepId, session: SessionDep) -> SweepCancelled:
    """Cancel queued runs now and ask running ones to stop at their next step."""
    result = sweeps.cancel_sweep(session, sweep_id)
    return SweepCancelled(
        sweep_id=sweep_id, cancelled=result.cancelled, cancel_requested=result.cancel_requested
    )


@router.post(
    "/sweeps/{sweep_id}/retry", response_model=SweepRetried, responses={404: {"model": Problem}}
)
def retry_sweep(sweep_id: SweepId, session: SessionDep, settings: SettingsDep) -> SweepRetried:
    """Queue failed, cancelled and pruned runs again; they resume from their checkpoints."""
    ids = sweeps.retry_runs(session, sweep_id)
    enqueued, warnings = enqueue_after_commit(session, settings, ids)
    return SweepRetried(sweep_id=sweep_id, retried=ids, enqueued=enqueued, warnings=warnings)
