"""The sweep page of a search in a real browser: the best-so-far chart, trial by trial."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from shared.db.models import RunStatus
from shared.settings import Settings
from tests.api.test_ui_browser import api, page  # noqa: F401 - fixtures
from tests.api.ui_support import TOKEN
from tests.support.stack import ManagedProcess
from tests.worker.test_search import (  # noqa: F401 - search_settings is a fixture
    end_trial,
    live,
    search_settings,
    search_yaml,
    submit,
)

pytestmark = pytest.mark.browser


def test_the_best_so_far_chart_shows_each_trial_and_the_best_up_to_it(
    page,  # noqa: F811 - the fixture imported above
    api: ManagedProcess,  # noqa: F811
    session: Session,
    search_settings: Settings,  # noqa: F811
) -> None:  # noqa: ANN001 - a playwright Page
    sweep_id, _ = submit(session, search_yaml("random", trials=4, in_flight=1), search_settings)
    for value, status in ((0.8, RunStatus.SUCCEEDED), (0.9, RunStatus.PRUNED),
                          (0.5, RunStatus.SUCCEEDED), (0.6, RunStatus.SUCCEEDED)):  # fmt: skip
        end_trial(session, live(session, sweep_id)[0], value, status)
    page.goto("/ui/login")
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.goto(f"/ui/sweeps/{sweep_id}")
    assert "4 of 4 trials started" in page.inner_text("#search-summary")
    page.wait_for_function("() => document.getElementById('best-so-far').data !== undefined")
    # A pruned trial has no final value: a gap (NaN) in the trial markers.
    traces = page.evaluate(
        "() => document.getElementById('best-so-far').data.map("
        "t => [t.name, t.x, t.y.map(v => Number.isNaN(v) ? 'gap' : v)])"
    )
    assert traces == [
        ["trial", [1, 2, 3, 4], [0.8, "gap", 0.5, 0.6]],
        ["best so far", [1, 2, 3, 4], [0.8, 0.8, 0.5, 0.5]],
    ]
