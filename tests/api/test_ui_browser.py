"""The UI in a real browser: chromium (Playwright) against the API under uvicorn, real database.

Log in, open a finished two-run sweep, check its table and that every chart draws one trace
per run, sort the table, then submit a sweep through the form (preview, then submit: the runs
are stored and their tasks reach the broker). Screenshots go to the test's tmp dir; with
SWEEPS_UI_DOCS_SCREENSHOT=<path> the sweep page is also saved there (docs/ui-sweep.png).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.db.metric_writes import upsert_metrics
from shared.db.models import Run, RunStatus, Sweep
from shared.db.session import make_engine
from tests.api.ui_support import CURVE_KEYS, TOKEN, add_points, finish_runs, seed_sweep
from tests.support.db import sweep_text
from tests.support.stack import ManagedProcess, stack_env, start_api

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture
def api(db_url: str, broker_url: str, tmp_path: Path) -> Iterator[ManagedProcess]:
    env = stack_env(
        database_url=db_url,
        broker_url=broker_url,
        artifact_dir=tmp_path / "artifacts",
        api_token=TOKEN,
    )
    with start_api(env, log_path=tmp_path / "api.log") as proc:
        yield proc


@pytest.fixture
def page(api: ManagedProcess) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(base_url=api.url, viewport={"width": 1300, "height": 900})
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        # Responses with an error status (401 for a wrong token, 422 for a broken file) are
        # expected here; anything else the console reports as an error is a bug.
        page.on(
            "console",
            lambda m: (
                errors.append(m.text)
                if m.type == "error" and not m.text.startswith("Failed to load resource")
                else None
            ),
        )
        yield page
        browser.close()
        assert errors == [], f"JavaScript errors in the pages: {errors}"


def chart_traces(page, key: str) -> list[str]:  # noqa: ANN001 - a playwright Page
    return page.evaluate("k => document.getElementById('chart-' + k).data.map(t => t.name)", key)


def test_sweep_page_and_submit_in_a_browser(
    page, api: ManagedProcess, db_url: str, broker_url: str, tmp_path: Path
) -> None:  # noqa: ANN001
    seeded = seed_sweep(db_url, runs=2, points=5)

    # Log in: the sweep page sends us to the form, and the form back to the sweep page.
    page.goto(f"/ui/sweeps/{seeded.sweep_id}")
    assert "/ui/login" in page.url
    page.fill("#token", "not-a-token")
    page.click("button[type=submit]")
    assert "not valid" in page.inner_text("[role=alert]")
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(f"**/ui/sweeps/{seeded.sweep_id}")
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["sweeps_session"]["httpOnly"] is True
    assert TOKEN not in cookies["sweeps_session"]["value"]

    # The table: one row per run, best values highlighted.
    rows = page.locator("#comparison tbody tr")
    assert rows.count() == 2
    assert page.locator("#comparison td.best").count() >= 4

    # Every curve chart has exactly one trace per run, named by slug; the parcoords one line each.
    page.wait_for_selector("#curves[data-ready='1']", timeout=20_000)
    for key in CURVE_KEYS:
        assert chart_traces(page, key) == seeded.slugs, key
        points = page.evaluate(
            "k => document.getElementById('chart-' + k).data.map(t => t.x.length)", key
        )
        assert points == [5, 5], key
        # validation curves mark their points: a one-validation run is a single point, which a
        # plain line would not draw at all
        modes = page.evaluate(
            "k => document.getElementById('chart-' + k).data.map(t => t.mode)", key
        )
        assert modes == ["lines" if key == "train_loss" else "lines+markers"] * 2, key
    lines = page.evaluate(
        "() => document.getElementById('parcoords').data[0].dimensions.map(d => d.values.length)"
    )
    assert lines == [2, 2]  # the matrix key and the final accuracy, one value per run
    page.screenshot(path=str(tmp_path / "sweep.png"), full_page=True)
    docs_copy = os.environ.get("SWEEPS_UI_DOCS_SCREENSHOT")
    if docs_copy:
        page.screenshot(path=docs_copy, full_page=False)

    # Sorting by a column header: descending accuracy puts the better run (the second) first.
    header = page.locator("#comparison th", has_text="accuracy (svc)").first
    header.click()
    header.click()
    assert header.get_attribute("aria-sort") == "descending"
    first = page.locator("#comparison tbody tr").first.get_attribute("data-run-id")
    assert first == str(seeded.run_ids[1])

    # Submit: a broken file names its line; the preview lists the runs; submit stores them.
    page.goto("/ui/submit")
    page.fill("#yaml", "matrix:\n  hidden: [4, 8\n")
    page.click("button[value=preview]")
    assert "line" in page.inner_text("#spec-error")
    page.fill("#yaml", sweep_text("tiny.yaml"))
    page.click("button[value=preview]")
    preview = page.locator("#preview tbody tr")
    assert preview.count() == 2
    assert "hidden:4" in page.inner_text("#preview")
    page.screenshot(path=str(tmp_path / "submit-preview.png"), full_page=True)
    page.click("button[value=submit]")
    page.wait_for_url("**/ui/sweeps/*")
    new_id = int(page.url.rstrip("/").rsplit("/", 1)[1])
    assert new_id != seeded.sweep_id
    assert page.locator("#comparison tbody tr").count() == 2
    page.screenshot(path=str(tmp_path / "submitted.png"), full_page=True)

    engine = make_engine(db_url)
    with Session(engine) as session:
        assert session.get(Sweep, new_id) is not None
        queued = session.scalar(
            select(func.count()).where(Run.sweep_id == new_id, Run.status == RunStatus.QUEUED)
        )
    engine.dispose()
    assert queued == 2
    client = redis.Redis.from_url(broker_url)
    assert client.llen("runs") == 2  # one task message per run, on the "runs" queue
    client.close()


def test_curves_follow_running_runs(page, api: ManagedProcess, db_url: str) -> None:  # noqa: ANN001
    """While runs train, the charts poll with `after` and grow; a finish refreshes the table."""
    seeded = seed_sweep(db_url, runs=2, points=2, status=RunStatus.RUNNING)
    page.goto("/ui/login")
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.goto(f"/ui/sweeps/{seeded.sweep_id}")
    page.wait_for_selector("#curves[data-ready='1']", timeout=20_000)
    assert "running 2" in page.inner_text("#sweep-status")
    count = "k => document.getElementById('chart-' + k).data.map(t => t.x.length)"
    assert page.evaluate(count, "validation_loss") == [2, 2]

    add_points(db_url, seeded.run_ids, [1920, 2560])
    page.wait_for_function(
        "() => document.getElementById('chart-validation_loss').data.every(t => t.x.length === 4)",
        timeout=20_000,
    )
    for key in CURVE_KEYS:  # each point drawn once: `after` skipped what was already there
        assert page.evaluate(count, key) == [4, 4], key
        steps = page.evaluate("k => document.getElementById('chart-' + k).data[0].x", key)
        assert steps == [640, 1280, 1920, 2560], key

    finish_runs(db_url, seeded.run_ids)
    page.wait_for_function(
        "() => document.getElementById('sweep-status').textContent.includes('succeeded 2')",
        timeout=20_000,
    )


def test_a_big_sweep_draws_finished_runs_as_one_trace_per_colour(
    page, api: ManagedProcess, db_url: str
) -> None:  # noqa: ANN001
    """Above 30 runs drawn the finished ones share a trace per colour, every point still drawn.

    The page draws the best 20 of a big sweep by default; `?curves=all` asks for every run."""
    seeded = seed_sweep(db_url, runs=40, points=5)
    page.goto("/ui/login")
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.goto(f"/ui/sweeps/{seeded.sweep_id}?curves=all")
    page.wait_for_selector("#curves[data-ready='1']", timeout=30_000)
    for key in CURVE_KEYS:
        chart = page.evaluate(
            "k => { const d = document.getElementById('chart-' + k);"
            " return {legend: d.layout.showlegend,"
            " traces: d.data.map(t => ({x: t.x, labels: t.customdata, colour: t.line.color}))}; }",
            key,
        )
        assert chart["legend"] is False, key
        traces = chart["traces"]
        assert len(traces) == 10 and len({t["colour"] for t in traces}) == 10, key
        drawn = [
            (label, x)
            for t in traces
            for x, label in zip(t["x"], t["labels"], strict=True)
            if x is not None
        ]
        assert len(drawn) == 40 * 5, key  # every run's every point, joined by gaps
        assert sorted({label for label, _ in drawn}) == sorted(seeded.slugs), key


def test_a_nan_is_marked_and_a_reload_revalidates_the_curves(
    page, api: ManagedProcess, db_url: str
) -> None:  # noqa: ANN001
    """A NaN leaves a gap marked by a cross; the browser re-asks with If-None-Match: a 304."""
    seeded = seed_sweep(db_url, runs=2, points=5)
    engine = make_engine(db_url)
    with Session(engine) as session:
        # the worker's own write path; 1920 is the run's 3rd train_loss point
        upsert_metrics(session, seeded.run_ids[0], [("train_loss", 1920, math.nan)])
        session.commit()
    engine.dispose()
    page.goto("/ui/login")
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.goto(f"/ui/sweeps/{seeded.sweep_id}")
    page.wait_for_selector("#curves[data-ready='1']", timeout=20_000)
    chart = page.evaluate(
        "() => document.getElementById('chart-train_loss').data"
        ".map(t => ({name: t.name, x: t.x, y: t.y}))"
    )
    assert [t["name"] for t in chart] == [*seeded.slugs, "NaN / inf"]
    assert chart[0]["y"][2] is None  # the gap in the line
    assert chart[2]["x"] == [1920] and chart[2]["y"] == [chart[0]["y"][1]]
    page.reload()
    page.wait_for_selector("#curves[data-ready='1']", timeout=20_000)
    curves = [line for line in api.log().splitlines() if "/ui/api/curves" in line]
    assert len(curves) == 2 and " 200" in curves[0] and " 304" in curves[1], curves
