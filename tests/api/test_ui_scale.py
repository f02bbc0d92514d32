"""The sweep page of a big sweep (more runs than one table page) and of a held sweep: counts,
the best runs, one page of the table with links to the others, the curves of the best few;
the hold banner and its release button."""

# The fixtures come from tests/api/ui_support.py (imported below), which ruff sees as redefined.
# ruff: noqa: F811

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import update

from api.ui.sweep_page_context import BEST_ROWS, TABLE_PAGE
from api.ui.views import CURVE_RUNS
from shared.db.models import Run, RunStatus, Sweep, SweepStatus
from shared.db.session import make_engine
from tests.api.ui_support import logged_in, seed_sweep, ui_client  # noqa: F401 - fixtures

SAME_ORIGIN = {"Origin": "http://testserver"}


def _row_ids(html: str, table_id: str) -> list[int]:
    table = html.split(f'id="{table_id}"', 1)[1].split("</table>", 1)[0]
    return [int(i) for i in re.findall(r'<tr data-run-id="(\d+)"', table)]


def test_a_big_sweeps_page_shows_the_best_runs_a_page_and_the_best_curves(
    logged_in: TestClient, db_url: str
) -> None:
    runs = TABLE_PAGE + 30
    seeded = seed_sweep(db_url, runs=runs, points=1)  # a later run has a lower loss
    page = logged_in.get(f"/ui/sweeps/{seeded.sweep_id}").text
    assert f"succeeded {runs}" in page
    assert _row_ids(page, "best") == seeded.run_ids[::-1][:BEST_ROWS]
    assert _row_ids(page, "comparison") == seeded.run_ids[:TABLE_PAGE]
    assert f"rows 1–{TABLE_PAGE} of {runs}" in page and 'href="?page=2"' in page
    curves = re.search(r'data-curves-url="([^"]+)"', page)
    assert curves is not None
    best = ",".join(map(str, seeded.run_ids[::-1][:CURVE_RUNS]))
    assert curves.group(1) == f"/ui/api/curves?runs={best}"
    assert f"Curves of the {CURVE_RUNS} runs with the lowest validation loss" in page

    second = logged_in.get(f"/ui/sweeps/{seeded.sweep_id}", params={"page": 2}).text
    assert _row_ids(second, "comparison") == seeded.run_ids[TABLE_PAGE:]
    every = logged_in.get(f"/ui/sweeps/{seeded.sweep_id}", params={"curves": "all"}).text
    assert f'data-curves-url="/ui/api/curves?sweeps={seeded.sweep_id}"' in every


def test_a_held_sweep_says_why_and_releases_its_runs_on_request(
    logged_in: TestClient, db_url: str
) -> None:
    seeded = seed_sweep(db_url, runs=4, status=RunStatus.FAILED)
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(update(Run).where(Run.id.in_(seeded.run_ids[3:])).values(status="held"))
        conn.execute(
            update(Sweep)
            .where(Sweep.id == seeded.sweep_id)
            .values(status=SweepStatus.HELD, hold_reason="the first 3 runs failed: KeyError")
        )
    engine.dispose()
    path = f"/ui/sweeps/{seeded.sweep_id}"
    page = logged_in.get(path).text
    assert "Held:</strong> the first 3 runs failed: KeyError" in page
    assert f"sweeps retry {seeded.sweep_id} --file FILE" in page and "held 1" in page

    plain = logged_in.post(f"{path}/retry", headers=SAME_ORIGIN)
    assert plain.headers["location"] == f"{path}?held=1"
    assert "This sweep is held" in logged_in.get(plain.headers["location"]).text
    forced = logged_in.post(f"{path}/retry", data={"force": "true"}, headers=SAME_ORIGIN)
    assert forced.headers["location"] == f"{path}?retried=4"
    assert "Held:" not in logged_in.get(path).text
