"""The UI's pages and endpoints through TestClient on the real app and database: login and the
session cookie, redirects, pages, downloads, cancel/retry/submit forms, the curves endpoint."""

# The fixtures come from tests/api/ui_support.py (imported below), which ruff sees as redefined.
# ruff: noqa: F811

from __future__ import annotations

import html
import math
import random
import re
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.ui import cookie as ui_cookie
from shared.db.metric_writes import upsert_metrics
from shared.db.models import ApiToken, Metric, Run, RunStatus, Sweep
from shared.db.session import make_engine
from shared.db.tokens import revoke_token
from shared.domain.curves import READ_WHOLE_FACTOR
from shared.domain.metrics import downsample
from shared.domain.table_rows import table_runs
from shared.results_table import build_table, to_markdown
from tests.api.conftest import queued_run_ids
from tests.api.ui_support import (  # noqa: F401 - fixtures
    CURVE_KEYS,
    TOKEN,
    curve_value,
    logged_in,
    seed_large_sweep,
    seed_sweep,
    ui_client,
)
from tests.support.db import sweep_text

SAME_ORIGIN = {"Origin": "http://testserver"}


@contextmanager
def db_session(db_url: str) -> Iterator[Session]:
    """A direct session on the test database; its engine is disposed so no connection lingers."""
    engine = make_engine(db_url)
    try:
        with Session(engine, expire_on_commit=False) as session:
            yield session
    finally:
        engine.dispose()


# ---------------------------------------------------------------- login and the cookie


def test_pages_redirect_to_login_without_a_session(ui_client: TestClient, db_url: str) -> None:
    seeded = seed_sweep(db_url)
    for path in ("/ui/", f"/ui/sweeps/{seeded.sweep_id}", f"/ui/runs/{seeded.run_ids[0]}",
                 "/ui/compare", "/ui/submit"):  # fmt: skip
        response = ui_client.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/ui/login?next=%2Fui%2F"), path
    # The data the pages fetch answers 401 instead of redirecting.
    assert ui_client.get(f"/ui/api/curves?sweeps={seeded.sweep_id}").status_code == 401
    # A bearer token is for the JSON API; the UI wants its own cookie.
    bearer = ui_client.get("/ui/", headers={"Authorization": f"Bearer {TOKEN}"})
    assert bearer.status_code == 303


def test_login_sets_an_httponly_samesite_cookie_without_the_token(ui_client: TestClient) -> None:
    page = ui_client.get("/ui/login?next=/ui/submit")
    assert page.status_code == 200
    assert 'name="token"' in page.text and 'value="/ui/submit"' in page.text

    wrong = ui_client.post("/ui/login", data={"token": "swp_wrong"}, headers=SAME_ORIGIN)
    assert wrong.status_code == 401
    assert "not valid" in wrong.text
    assert "set-cookie" not in wrong.headers

    response = ui_client.post(
        "/ui/login", data={"token": TOKEN, "next": "/ui/submit"}, headers=SAME_ORIGIN
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/submit"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{ui_cookie.COOKIE_NAME}=v1.")
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert "httponly" in flags
    assert "samesite=lax" in flags
    assert "path=/" in flags
    assert "secure" not in flags  # plain http here; set when the request came over https
    assert TOKEN not in cookie
    assert ui_client.get("/ui/submit").status_code == 200


def test_login_refuses_an_open_redirect(ui_client: TestClient) -> None:
    response = ui_client.post(
        "/ui/login", data={"token": TOKEN, "next": "https://evil.example/"}, headers=SAME_ORIGIN
    )
    assert response.headers["location"] == "/ui/"


def test_logout_clears_the_cookie(logged_in: TestClient) -> None:
    response = logged_in.post("/ui/logout", headers=SAME_ORIGIN)
    assert response.status_code == 303
    cookie = response.headers["set-cookie"].lower()
    assert cookie.startswith(f"{ui_cookie.COOKIE_NAME}=")
    assert "max-age=0" in cookie and "httponly" in cookie
    assert logged_in.get("/ui/").status_code == 303


def test_tampered_expired_and_revoked_sessions_are_refused(
    logged_in: TestClient, db_url: str
) -> None:
    assert logged_in.get("/ui/").status_code == 200
    value = logged_in.cookies[ui_cookie.COOKIE_NAME]
    prefix, token_id, expires, signature = value.split(".")

    def status_with(cookie: str) -> int:
        logged_in.cookies.set(ui_cookie.COOKIE_NAME, cookie)
        return logged_in.get("/ui/").status_code

    flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    assert status_with(f"{prefix}.{token_id}.{expires}.{flipped}") == 303
    assert status_with(f"{prefix}.{token_id}.{int(expires) + 3600}.{signature}") == 303
    with db_session(db_url) as session:
        token = session.get(ApiToken, int(token_id))
        assert token is not None
        expired = ui_cookie.make_cookie_value(token.id, token.token_hash, now=0)
        assert status_with(expired) == 303
        assert status_with(value) == 200
        revoke_token(session, token.id)
        session.commit()
    assert status_with(value) == 303


def test_posts_from_another_site_are_refused(logged_in: TestClient, db_url: str) -> None:
    seeded = seed_sweep(db_url, status=RunStatus.QUEUED)
    response = logged_in.post(
        f"/ui/sweeps/{seeded.sweep_id}/cancel", headers={"Origin": "http://evil.example"}
    )
    assert response.status_code == 403
    assert set(_statuses(db_url, seeded.run_ids)) == {"queued"}


# ---------------------------------------------------------------- pages


def test_sweeps_list_shows_name_counts_and_progress(logged_in: TestClient, db_url: str) -> None:
    seed_sweep(db_url, name="first/sweep")
    seed_sweep(db_url, name="second/sweep", runs=3, status=RunStatus.RUNNING)
    page = logged_in.get("/ui/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "first/sweep" in page.text and "second/sweep" in page.text
    assert '<span class="status succeeded">succeeded 2</span>' in page.text
    assert '<span class="status running">running 3</span>' in page.text
    assert "100%" in page.text


def test_sweep_page_table_matches_the_shared_table(logged_in: TestClient, db_url: str) -> None:
    seeded = seed_sweep(db_url)
    page = logged_in.get(f"/ui/sweeps/{seeded.sweep_id}")
    assert page.status_code == 200
    assert page.text.count('<tr data-run-id="') == 2
    # Run 2 has the lower loss and higher accuracies: its four quality cells are the best.
    assert len(re.findall(r'class="num best"', page.text)) == 4
    assert "validation loss (3,200 steps)" in page.text
    assert 'id="parcoords-data"' in page.text
    assert "/ui/static/plotly-" in page.text

    markdown = logged_in.get(f"/ui/sweeps/{seeded.sweep_id}/table.md")
    assert markdown.status_code == 200
    assert "attachment" in markdown.headers["content-disposition"]
    with db_session(db_url) as session:
        runs, keys = table_runs(session, sweep_ids=[seeded.sweep_id])
    assert markdown.text == to_markdown(build_table(runs, keys))
    assert "**0.8494**" in markdown.text
    csv = logged_in.get(f"/ui/sweeps/{seeded.sweep_id}/table.csv")
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[0].startswith('run,status,hidden,"validation loss (3,200 steps)"')


def test_sweep_page_sorts_by_any_column(logged_in: TestClient, db_url: str) -> None:
    seeded = seed_sweep(db_url, runs=3)
    page = logged_in.get(f"/ui/sweeps/{seeded.sweep_id}", params={"sort": "-accuracy (svc)"})
    order = [int(i) for i in re.findall(r'<tr data-run-id="(\d+)"', page.text)]
    assert order == list(reversed(seeded.run_ids))
    bad = logged_in.get(f"/ui/sweeps/{seeded.sweep_id}", params={"sort": "colour"})
    assert bad.status_code == 422
    assert "colour" in bad.text
    assert logged_in.get("/ui/sweeps/999").status_code == 404


def test_run_page_shows_config_provenance_and_traceback(logged_in: TestClient, db_url: str) -> None:
    seeded = seed_sweep(db_url, runs=1, status=RunStatus.FAILED)
    with db_session(db_url) as session:
        run = session.get(Run, seeded.run_ids[0])
        assert run is not None
        run.error = "RuntimeError: shapes do not match"
        run.traceback = 'Traceback (most recent call last):\n  File "<model>", line 3\n<b>x</b>'
        run.phases = {"total": 4.0, "train": 3.0, "imports": 0.5, "svc_fit": 1.25}
        session.commit()
    page = logged_in.get(f"/ui/runs/{seeded.run_ids[0]}")
    assert page.status_code == 200
    assert "shapes do not match" in page.text
    assert "&lt;b&gt;x&lt;/b&gt;" in page.text  # escaped, never rendered as markup
    assert "matrix_slug: hidden:16" in page.text  # the resolved config as YAML
    assert "host: ui-test-host" in page.text  # provenance
    assert '<span class="status failed" id="run-status">failed</span>' in page.text
    # Where the time went: one row per phase, in the order a run meets them, with its share.
    phases = page.text.split('id="phases"')[1].split("</table>")[0]
    rows = re.findall(r"<tr><td>([^<]+)</td><td class=\"num\">([^<]+)</td>"
                      r"<td class=\"num\">([^<]*)</td></tr>", phases)  # fmt: skip
    assert rows == [
        ("process start and imports", "0.50s", "12%"),
        ("training", "3.00s", "75%"),
        ("SVC fit, in-sample (background)", "1.25s", "31%"),
        ("total", "4.00s", ""),
    ]
    assert logged_in.get("/ui/runs/999").status_code == 404


def test_compare_page_joins_runs_of_several_sweeps(logged_in: TestClient, db_url: str) -> None:
    first = seed_sweep(db_url, name="first")
    second = seed_sweep(db_url, name="second", runs=3, matrix_key="layer")
    page = logged_in.get(
        "/ui/compare", params=[("runs", str(first.run_ids[1])), ("sweeps", str(second.sweep_id))]
    )
    assert page.status_code == 200
    shown = [int(i) for i in re.findall(r'<tr data-run-id="(\d+)"', page.text)]
    assert shown == [first.run_ids[1], *second.run_ids]
    assert '<th scope="col">sweep</th>' in page.text
    assert '<th scope="col">hidden</th>' in page.text and '<th scope="col">layer</th>' in page.text
    # Picked runs come back ticked, so unticking one removes it.
    ticked = re.findall(r'name="runs" value="(\d+)" checked', page.text)
    assert sorted(map(int, ticked)) == sorted(shown)
    curves = logged_in.get(f"/ui/api/curves?runs={','.join(map(str, shown))}").json()
    assert [r["label"] for r in curves["runs"]][:2] == ["first · hidden:32", "second · layer:16"]
    bad = logged_in.get("/ui/compare?runs=12x")
    assert bad.status_code == 200 and "not a number" in bad.text


# ---------------------------------------------------------------- forms that change things


def test_cancel_and_retry_buttons(logged_in: TestClient, db_url: str, broker_url: str) -> None:
    seeded = seed_sweep(db_url, status=RunStatus.QUEUED)
    response = logged_in.post(f"/ui/sweeps/{seeded.sweep_id}/cancel", headers=SAME_ORIGIN)
    assert response.status_code == 303
    assert response.headers["location"] == f"/ui/sweeps/{seeded.sweep_id}?cancelled=2&stopping=0"
    assert set(_statuses(db_url, seeded.run_ids)) == {"cancelled"}
    page = logged_in.get(response.headers["location"])
    assert "Cancelled 2 queued runs" in page.text

    response = logged_in.post(f"/ui/sweeps/{seeded.sweep_id}/retry", headers=SAME_ORIGIN)
    assert response.headers["location"] == f"/ui/sweeps/{seeded.sweep_id}?retried=2"
    assert set(_statuses(db_url, seeded.run_ids)) == {"queued"}
    client = redis.Redis.from_url(broker_url)
    assert queued_run_ids(client) == seeded.run_ids  # enqueued after the commit
    client.close()


def test_submit_preview_stores_nothing_and_submit_enqueues(
    logged_in: TestClient, db_url: str, broker_url: str
) -> None:
    text = sweep_text("tiny.yaml")
    preview = logged_in.post(
        "/ui/submit", data={"yaml": text, "action": "preview"}, headers=SAME_ORIGIN
    )
    assert preview.status_code == 200
    assert preview.text.count("<tr><td>") == 2 and "hidden:4" in preview.text
    assert _count(db_url, Sweep) == 0

    created = logged_in.post(
        "/ui/submit",
        data={"action": "submit", "name": "from the form"},
        files={"file": ("tiny.yaml", text.encode(), "application/x-yaml")},
        headers=SAME_ORIGIN,
    )
    assert created.status_code == 303
    sweep_id = int(created.headers["location"].rsplit("/", 1)[1])
    with db_session(db_url) as session:
        sweep = session.get(Sweep, sweep_id)
        assert sweep is not None and sweep.name == "from the form"
        run_ids = [r.id for r in sweep.runs]
    client = redis.Redis.from_url(broker_url)
    assert queued_run_ids(client) == run_ids
    client.close()


def test_submit_shows_the_spec_error_with_its_line_and_key(logged_in: TestClient) -> None:
    text = sweep_text("tiny.yaml").replace("batch_size: 32", "batch_size: many")
    response = logged_in.post(
        "/ui/submit", data={"yaml": text, "action": "preview"}, headers=SAME_ORIGIN
    )
    assert response.status_code == 422
    error = re.search(r'<div class="error-box" role="alert" id="spec-error">(.*?)</div>',
                      response.text, re.S)  # fmt: skip
    assert error is not None
    assert "batch_size" in error.group(1) and "line" in error.group(1)
    assert "batch_size: many" in response.text  # the text is kept for fixing


# ---------------------------------------------------------------- curves and static files


def test_curves_endpoint_one_series_per_run_and_key(logged_in: TestClient, db_url: str) -> None:
    seeded = seed_sweep(db_url, runs=2, points=5)
    data = logged_in.get(f"/ui/api/curves?sweeps={seeded.sweep_id}").json()
    assert [r["slug"] for r in data["runs"]] == seeded.slugs
    for key in CURVE_KEYS:
        assert sorted(data["series"][key]) == [str(i) for i in seeded.run_ids]
        steps, values = data["series"][key][str(seeded.run_ids[0])]
        assert steps == [640, 1280, 1920, 2560, 3200] and len(values) == 5

    # `after` per run returns only newer points; max_points below the series length thins it.
    after = f"{seeded.run_ids[0]}:1920,{seeded.run_ids[1]}:3200"
    newer = logged_in.get(f"/ui/api/curves?runs={','.join(map(str, seeded.run_ids))}"
                          f"&after={after}").json()  # fmt: skip
    assert newer["series"]["train_loss"] == {
        str(seeded.run_ids[0]): [
            [2560, 3200],
            newer["series"]["train_loss"][str(seeded.run_ids[0])][1],
        ]
    }
    assert logged_in.get("/ui/api/curves?runs=1&after=1-5").status_code == 422
    assert logged_in.get("/ui/api/curves?runs=1&max_points=2").status_code == 422


def test_curves_for_200_runs_x_35_validations(logged_in: TestClient, db_url: str) -> None:
    """Every run's every series in one request, complete and in step order (timing: bench/)."""
    seeded = seed_large_sweep(db_url, runs=200, validations=35)
    response = logged_in.get(
        f"/ui/api/curves?sweeps={seeded.sweep_id}&max_points=100",
        headers={"Accept-Encoding": "gzip"},
    )
    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"  # megabytes of digits: compressed
    data = response.json()
    assert [r["slug"] for r in data["runs"]] == seeded.slugs
    expected_steps = [(p + 1) * 1_000 for p in range(35)]
    for key in CURVE_KEYS:
        assert len(data["series"][key]) == 200
        for n, run_id in enumerate(seeded.run_ids):
            steps, values = data["series"][key][str(run_id)]
            assert steps == expected_steps
            assert values[-1] == curve_value(key, n, 35_000)


def test_curves_show_a_reused_runs_source(logged_in: TestClient, db_url: str) -> None:
    source = seed_sweep(db_url, runs=1)
    reused = seed_sweep(db_url, runs=1, name="again")
    with db_session(db_url) as session:
        run = session.get(Run, reused.run_ids[0])
        assert run is not None
        session.query(Metric).filter(Metric.run_id == run.id).delete()
        run.status, run.reused_from_id = RunStatus.REUSED, source.run_ids[0]
        session.commit()
    data = logged_in.get(f"/ui/api/curves?sweeps={reused.sweep_id}").json()
    steps, _ = data["series"]["validation_loss"][str(reused.run_ids[0])]
    assert steps == [640, 1280, 1920, 2560, 3200]


def test_curves_downsample_like_the_metrics_endpoint(logged_in: TestClient, db_url: str) -> None:
    """The batch endpoint's min-max buckets, in SQL or after a whole read, keep the same points
    as GET /runs/{id}/metrics."""
    seeded = seed_sweep(db_url, runs=2, points=1)
    rng = random.Random(7)
    series = {rid: [(s * 10, rng.random()) for s in range(1, 1000 + 137 * i)]
              for i, rid in enumerate(seeded.run_ids)}  # fmt: skip
    with db_session(db_url) as session:
        for run_id, points in series.items():
            session.query(Metric).filter(Metric.run_id == run_id).delete()
            session.add_all(Metric(run_id=run_id, key="train_loss", step=s, value=v)
                            for s, v in points)  # fmt: skip
        session.commit()
    # 999 and 1,136 points: bucketed in SQL (4, 9, 100), read whole and bucketed in Python
    # (200), one each way in one request (130: READ_WHOLE_FACTOR x 130 = 1,040), not at all (5000)
    assert READ_WHOLE_FACTOR == 8
    for max_points in (4, 9, 100, 130, 200, 5000):
        data = logged_in.get(f"/ui/api/curves?sweeps={seeded.sweep_id}&max_points={max_points}")
        for run_id, points in series.items():
            steps, values = data.json()["series"]["train_loss"][str(run_id)]
            expected = downsample(points, max_points)
            assert list(zip(steps, values, strict=True)) == [tuple(p) for p in expected]
            assert len(steps) <= max_points
            assert min(values) == min(v for _, v in points)
            assert not any(math.isnan(v) for v in values)


def test_curves_keep_nan_as_a_gap_in_sql_and_python_buckets(
    logged_in: TestClient, db_url: str
) -> None:
    """A NaN ranks lowest in a bucket, in SQL as in Python: it stays (a gap), beside the
    bucket's highest number; GET /runs/{id}/metrics thins the same way."""
    seeded = seed_sweep(db_url, runs=1, points=1)
    run_id = seeded.run_ids[0]
    rng = random.Random(11)
    points: list[tuple[int, float | None]] = [(s * 10, rng.random()) for s in range(1, 1200)]
    for i in (100, 101, 700):  # a diverged stretch and a lone NaN
        points[i] = (points[i][0], None)
    with db_session(db_url) as session:
        session.query(Metric).filter(Metric.run_id == run_id, Metric.key == "train_loss").delete()
        session.commit()
        nan = [(step, math.nan if v is None else v) for step, v in points]
        upsert_metrics(session, run_id, [("train_loss", step, v) for step, v in nan])
        session.commit()
    for max_points in (20, 200):  # bucketed in SQL (1,199 > 8 x 20), then in Python
        expected = downsample(points, max_points)
        assert (1010, None) in expected and (7010, None) in expected
        data = logged_in.get(f"/ui/api/curves?runs={run_id}&max_points={max_points}").json()
        steps, values = data["series"]["train_loss"][str(run_id)]
        assert list(zip(steps, values, strict=True)) == expected
        api = logged_in.get(
            f"/runs/{run_id}/metrics?keys=train_loss&max_points={max_points}",
            headers={"Authorization": f"Bearer {TOKEN}"},
        ).json()
        assert [tuple(p) for p in api["series"]["train_loss"]] == expected


def test_plotly_and_static_files_are_served_with_long_cache(ui_client: TestClient) -> None:
    page = ui_client.get("/ui/login")
    urls = re.findall(r'(/ui/static/[^"]+)"', page.text)
    assert any(u.startswith("/ui/static/ui.css?v=") for u in urls)
    from api.ui import assets

    plotly = ui_client.get(assets.plotly_url(), headers={"Accept-Encoding": "gzip"})
    assert plotly.status_code == 200
    assert plotly.headers["content-encoding"] == "gzip"
    assert "max-age=31536000" in plotly.headers["cache-control"]
    assert plotly.headers["content-type"].startswith("text/javascript")
    assert plotly.content == assets.plotly_js_path().read_bytes()  # httpx un-gzips it
    assert b"plotly.js" in plotly.content[:400]
    assert ui_client.get("/ui/static/ui.js").status_code == 200
    assert ui_client.get("/ui/static/..%2Fapi.py").status_code == 404
    assert ui_client.get("/ui/static/missing.js").status_code == 404


# ---------------------------------------------------------------- helpers


def _statuses(db_url: str, run_ids: list[int]) -> list[str]:
    with db_session(db_url) as session:
        rows = session.execute(select(Run.status).where(Run.id.in_(run_ids)).order_by(Run.id))
        return [status.value for (status,) in rows]


def _count(db_url: str, model: type[Sweep]) -> int:
    with db_session(db_url) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_submit_refuses_an_upload_over_the_body_limit(logged_in: TestClient) -> None:
    huge = b"# padding\n" * 200_001  # just over the 2,000,000-byte default
    response = logged_in.post(
        "/ui/submit",
        data={"action": "preview"},
        files={"file": ("huge.yaml", huge, "application/x-yaml")},
        headers=SAME_ORIGIN,
    )
    assert response.status_code == 413
    assert "huge.yaml is larger than 2,000,000 bytes" in response.text


def test_submit_refuses_a_bad_name_as_the_api_does(logged_in: TestClient, db_url: str) -> None:
    text = sweep_text("tiny.yaml")
    for bad in ("tab\there", "x" * 201):
        api = logged_in.post(
            "/sweeps",
            params={"name": bad},
            content=text.encode(),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "text/plain"},
        )
        page = logged_in.post(
            "/ui/submit", data={"yaml": text, "name": bad, "action": "submit"}, headers=SAME_ORIGIN
        )
        assert (api.status_code, page.status_code) == (422, 422)
        error = re.search(r'id="spec-error">\s*(.*?)\s*</div>', page.text, re.S)
        assert error is not None and html.unescape(error.group(1)) == api.json()["detail"]
    assert _count(db_url, Sweep) == 0
