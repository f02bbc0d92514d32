"""The web UI under /ui: server-rendered pages, a cookie session, and one batch curves endpoint.

Pages call the domain layer (shared.domain) and shared.results_table, the same functions the
JSON API uses, so what the browser shows is what `GET /sweeps/{id}/table` returns. Errors are
mapped by api/errors.py (404, 409, 422) as for the JSON routes. Forms post back here
(post/redirect/get); JavaScript only draws charts and polls while runs are unfinished.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from api.deps import SessionDep, SettingsDep, ensure_bootstrap
from api.errors import InvalidInput
from api.etag import is_fresh, make_etag, not_modified
from api.params import RunId, SweepId, parse_ids
from api.table_params import Options
from api.ui import assets, auth, views
from api.ui.auth import DataUser, FormUser, PageUser, SiteUser
from api.ui.sweep_page_context import flash_text, sweep_context
from shared import queue
from shared.domain import access, reads, retry, search, trials
from shared.domain import runs as run_state
from shared.domain.curves import curves_payload, load_runs, parse_after
from shared.domain.submit import (
    check_sweep_name,
    parse_submission,
    plan_specs,
    submit_sweep,
    sweep_name,
)
from shared.domain.table_rows import table_runs
from shared.domain.versions import metrics_version
from shared.plugins import parse_options
from shared.results_table import build_table
from shared.sweepfile import SpecError

router = APIRouter(prefix="/ui", include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).resolve().parent / "templates")
templates.env.globals.update(static_url=assets.static_url, plotly_url=assets.plotly_url)

TablePage = Annotated[int, Query(ge=1, le=2**31 - 1, description="page of the sweep's table")]
SWEEPS_PER_PAGE = 50
DEFAULT_MAX_POINTS = 400
# Points per chart the browser is asked to draw at most: many runs get fewer points each.
CHART_POINT_BUDGET = 20_000


def max_points_for(runs: int) -> int:
    return max(50, min(DEFAULT_MAX_POINTS, CHART_POINT_BUDGET // max(1, runs)))


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("logged_in", True)
    token = getattr(request.state, "ui_token", None)
    context.setdefault("can_submit", token is not None and access.may_write(token))
    return templates.TemplateResponse(request, template, context, status_code=status_code)


# ---------------------------------------------------------------- login


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str | None = None) -> HTMLResponse:
    return render(request, "login.html", logged_in=False, next=auth.safe_next(next), error=None)


@router.post("/login")
def login(
    request: Request,
    db: SessionDep,
    token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/ui/",
) -> Response:
    auth.check_same_origin(request)
    ensure_bootstrap(request)
    found = auth.login(db, token)
    if found is None:
        error = "That token is not valid (unknown or revoked)." if token else "Paste a token."
        return render(
            request, "login.html", 401, logged_in=False, next=auth.safe_next(next), error=error
        )
    response = RedirectResponse(auth.safe_next(next), status_code=303)
    auth.set_session_cookie(request, response, found)
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    auth.check_same_origin(request)
    response = RedirectResponse("/ui/login", status_code=303)
    auth.clear_session_cookie(request, response)
    return response


# ---------------------------------------------------------------- static files


@router.get("/static/plotly-{version}.min.js")
def plotly_js(request: Request, version: str) -> Response:
    return assets.serve(assets.plotly_asset(), request)


@router.get("/static/{name}")
def static_file(request: Request, name: str) -> Response:
    return assets.serve(assets.own_asset(name), request)


# ---------------------------------------------------------------- sweeps


@router.get("")
def ui_root() -> Response:
    return RedirectResponse("/ui/", status_code=307)


@router.get("/", response_class=HTMLResponse)
def sweeps_page(request: Request, db: SessionDep, _: PageUser, page: int = 1) -> HTMLResponse:
    page = max(1, page)
    sweeps, total = reads.list_sweeps(
        db, limit=SWEEPS_PER_PAGE, offset=(page - 1) * SWEEPS_PER_PAGE
    )
    rows = [views.sweep_row(s) for s in reads.summarize(db, sweeps)]
    return render(
        request,
        "sweeps.html",
        sweeps=rows,
        page=page,
        has_more=page * SWEEPS_PER_PAGE < total,
    )


@router.get("/sweeps/{sweep_id}", response_class=HTMLResponse)
def sweep_page(
    request: Request,
    db: SessionDep,
    user: PageUser,
    sweep_id: SweepId,
    options: Options,
    page: TablePage = 1,
    curves: str | None = None,
    cancelled: int | None = None,
    stopping: int | None = None,
    retried: int | None = None,
    held: int | None = None,
) -> HTMLResponse:
    context = sweep_context(db, sweep_id, options, page, all_curves=curves == "all")
    context["may_change"] = access.may_change(user, context["sweep"])
    averaged = context["raw_table"].average is not None  # rows are configurations, not runs
    context["parcoords"] = (
        {"params": []} if averaged else views.parcoords_spec(context["runs"], context["param_keys"])
    )
    progress = trials.search_progress(db, sweep_id, context["sweep"].search)
    context["search"] = progress.to_json() if progress else None
    flash = flash_text(cancelled, stopping, retried)
    if held:
        flash = "This sweep is held: release its runs below, or retry with the fixed file."
    return render(
        request,
        "sweep.html",
        # Options that do not fit: the plain table, the form and the reason, as a 422.
        status_code=422 if context["options_form"].error else 200,
        max_points=max_points_for(len(context["curves"]["run_ids"]) or len(context["runs"])),
        flash=flash,
        **context,
    )


@router.get("/sweeps/{sweep_id}/live", response_class=HTMLResponse)
def sweep_live(
    request: Request,
    db: SessionDep,
    user: DataUser,
    sweep_id: SweepId,
    options: Options,
    page: TablePage = 1,
) -> HTMLResponse:
    """The status block and table, re-fetched by the page while runs are unfinished."""
    context = sweep_context(db, sweep_id, options, page)
    context["may_change"] = access.may_change(user, context["sweep"])
    return render(request, "_sweep_live.html", **context)


@router.post("/sweeps/{sweep_id}/cancel")
def cancel_sweep(db: SessionDep, user: FormUser, sweep_id: SweepId) -> Response:
    access.check_may_change(db, user, sweep_id)
    try:
        result = run_state.cancel_sweep(db, sweep_id)
    except run_state.Conflict:  # all finished meanwhile: the page says nothing was cancelled
        result = run_state.CancelResult([], [])
    return RedirectResponse(
        f"/ui/sweeps/{sweep_id}?cancelled={len(result.cancelled)}"
        f"&stopping={len(result.cancel_requested)}",
        status_code=303,
    )


@router.post("/sweeps/{sweep_id}/retry")
def retry_sweep(
    db: SessionDep,
    settings: SettingsDep,
    user: FormUser,
    sweep_id: SweepId,
    force: Annotated[bool, Form()] = False,
) -> Response:
    access.check_may_change(db, user, sweep_id)
    try:
        run_ids = retry.retry_sweep(db, sweep_id, force=force)
    except run_state.Conflict:  # held: the page says how to release it
        return RedirectResponse(f"/ui/sweeps/{sweep_id}?held=1", status_code=303)
    run_state.enqueue_after_commit(db, run_ids, queue.sender(settings.broker_url))
    return RedirectResponse(f"/ui/sweeps/{sweep_id}?retried={len(run_ids)}", status_code=303)


# ---------------------------------------------------------------- runs


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, db: SessionDep, user: PageUser, run_id: RunId) -> HTMLResponse:
    run = reads.get_run(db, run_id)
    return render(
        request,
        "run.html",
        run=run,
        may_change=access.may_change(user, reads.get_sweep(db, run.sweep_id)),
        run_finished=run.status.finished,
        params_text=views.params_text(run),
        timings=views.run_timings(run),
        phases=views.run_phases(run),
        config_yaml=views.to_yaml(run.config),
        provenance_yaml=views.to_yaml(run.provenance) if run.provenance else "",
        max_points=DEFAULT_MAX_POINTS,
    )


@router.post("/runs/{run_id}/cancel")
def cancel_run(db: SessionDep, user: FormUser, run_id: RunId) -> Response:
    access.check_may_change_run(db, user, run_id)
    with contextlib.suppress(run_state.Conflict):  # finished meanwhile: the page shows it
        run_state.cancel_run(db, run_id)
    return RedirectResponse(f"/ui/runs/{run_id}", status_code=303)


# ---------------------------------------------------------------- compare


def _ids(values: list[str], what: str) -> list[int]:
    """Repeated (?runs=1&runs=2), comma- or space-separated (?runs=1,2) ids, in order, unique."""
    items = [item for item in ",".join(values).replace(" ", ",").split(",") if item]
    return parse_ids(",".join(items), what)


@router.get("/compare", response_class=HTMLResponse)
def compare_page(
    request: Request,
    db: SessionDep,
    _: PageUser,
    runs: Annotated[list[str], Query()] = [],  # noqa: B006 - FastAPI copies defaults
    sweeps: Annotated[list[str], Query()] = [],  # noqa: B006
    sort: str | None = None,
) -> HTMLResponse:
    context: dict[str, Any] = {"table": None, "error": None, "candidates": []}
    try:
        run_ids, sweep_ids = _ids(runs, "runs"), _ids(sweeps, "sweeps")
        rows, param_keys = table_runs(db, sweep_ids=sweep_ids, run_ids=run_ids)
        if rows:
            table = build_table(rows, param_keys, sort=sort)
            context["table"] = views.table_view(table)
            context["run_ids"] = [r.run.run_id for r in table.rows]
    except (InvalidInput, reads.NotFound) as error:
        run_ids, sweep_ids, context["error"] = [], [], str(error)
    # Picked runs come back as checkboxes, so unticking one drops it; only ids that have no
    # checkbox stay in the text field.
    picked = set(context.get("run_ids", []))
    context["candidates"] = reads.compare_candidates(db, picked)
    listed = {c["id"] for c in context["candidates"]}
    return render(
        request,
        "compare.html",
        runs_text=",".join(str(i) for i in sorted(picked - listed)),
        sweeps_text="",
        max_points=max_points_for(len(picked)),
        **context,
    )


# ---------------------------------------------------------------- submit


@router.get("/submit", response_class=HTMLResponse)
def submit_form(request: Request, _: PageUser) -> HTMLResponse:
    return render(request, "submit.html", yaml="", name="", force=False, error=None, preview=None)


@router.post("/submit", response_class=HTMLResponse)
async def submit(
    request: Request,
    db: SessionDep,
    settings: SettingsDep,
    user: SiteUser,
    yaml: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    force: Annotated[bool, Form()] = False,
    action: Annotated[str, Form()] = "preview",
    file: UploadFile | None = None,
    bases: list[UploadFile] | None = None,
) -> Response:
    if action == "submit":  # any role may preview, as POST /sweeps/preview
        access.check_method(user, request.method)
    source: str | bytes = yaml
    form: dict[str, Any] = {"yaml": yaml, "name": name, "force": force, "preview": None}
    filename = "sweep.yaml"
    files: dict[str, str] = {}
    uploads = [*([file] if file is not None and not yaml.strip() else []), *(bases or [])]
    for upload in uploads:
        if not upload.filename:
            continue
        raw = await upload.read(settings.max_body_bytes + 1)
        if len(raw) > settings.max_body_bytes:
            limit = f"{settings.max_body_bytes:,} bytes (SWEEPS_MAX_BODY_BYTES)"
            error = {"message": f"{upload.filename} is larger than {limit}", "location": None}
            return render(request, "submit.html", 413, **{**form, "yaml": ""}, error=error)
        if upload is file:
            source, filename = raw, upload.filename
            # Shown back in the form as far as it reads; the parser names a byte not UTF-8.
            form["yaml"] = raw.decode("utf-8", "replace")
        else:  # a base that $extends names: by its name, beside the sweep file
            files[upload.filename] = raw.decode("utf-8", "replace")
    try:
        check_sweep_name(name)  # the API's rule and message, before the file as there
        spec = parse_submission(source, settings, filename=filename, files=files)
    except InvalidInput as error:
        return render(request, "submit.html", 422, **form, error={"message": str(error)})
    except SpecError as error:
        return render(request, "submit.html", 422, **{**form, "error": error.to_dict()})
    if action != "submit":
        first = search.preview_specs(spec, **parse_options(settings))
        form["preview"] = views.preview(plan_specs(db, first, force=force), spec.search)
        form["merged"] = spec.yaml_text if spec.merged_from else None
        return render(
            request, "submit.html", **{**form, "error": None, "name": sweep_name(spec, name)}
        )
    try:
        submitted = submit_sweep(
            db, spec, queue.sender(settings.broker_url), name=name, force=force, owner=user
        )
    except SpecError as error:  # a search whose first trials cannot be sampled
        db.rollback()
        return render(request, "submit.html", 422, **{**form, "error": error.to_dict()})
    return RedirectResponse(f"/ui/sweeps/{submitted.sweep.id}", status_code=303)


# ---------------------------------------------------------------- data for the charts


@router.get("/api/curves")
def curves(
    request: Request,
    db: SessionDep,
    _: DataUser,
    runs: str = "",
    sweeps: str = "",
    after: str = "",
    max_points: Annotated[int, Query(ge=4, le=5000)] = DEFAULT_MAX_POINTS,
) -> Response:
    """Learning curves of many runs in two queries: runs, then every series downsampled."""
    run_ids, sweep_ids = _ids([runs], "runs"), _ids([sweeps], "sweeps")
    try:
        cursors = parse_after(after)
    except ValueError as error:
        raise InvalidInput(str(error)) from None
    chosen = load_runs(db, sweep_ids=sweep_ids, run_ids=run_ids)
    # The runs shown (their status) and the runs whose points are drawn (their sources).
    shown = {r.id for r in chosen} | {r.source_id for r in chosen}
    etag = make_etag(request, metrics_version(db, shown))
    if is_fresh(request, etag):
        return not_modified(etag)
    payload = curves_payload(db, chosen, after=cursors, max_points=max_points)
    return assets.json_response(payload, request, etag=etag)
