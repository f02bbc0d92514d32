"""`search` through the API: preview, bad input, and random and TPE searches trained to `trials`
runs by a real worker (a tiny MLP on 640 generated points)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import API_TOKEN, post_yaml
from tests.support.db import sweep_text
from tests.support.stack import stack_env, start_worker, wait_until

SEARCH = """\
search:
  method: {method}
  trials: {trials}
  metric: validation_loss
  in_flight: 2
  seed: 3
matrix:
  lr: {{low: 1.0e-4, high: 0.1, log: true}}
  hidden: [4, 8]
"""


def search_file(method: str, trials: int = 4, *, early_stop: bool = False) -> str:
    """tests/support/data/asha.yaml with a search over its learning rate and width."""
    text = sweep_text("asha.yaml").replace("matrix:\n  lr: [0.01, 0.0000001]\n", "")
    text = text.replace("nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2)",
                        "nn.Linear(16, ${hidden}), nn.ReLU(), nn.Linear(${hidden}, 2)")  # fmt: skip
    text = text.replace("max_inputs: 16_384", "max_inputs: 2_048")
    if not early_stop:
        text = text[: text.index("early_stop:")] + text[text.index("model: |") :]
    return SEARCH.format(method=method, trials=trials) + text


def preview(client: TestClient, text: str) -> Any:
    return client.post(
        "/sweeps/preview", content=text, headers={"Content-Type": "application/x-yaml"}
    )


def test_preview_describes_the_search_and_lists_its_first_sampled_trials(
    client: TestClient,
) -> None:
    answer = preview(client, search_file("random", trials=12))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["search"] == "random, 12 trials over lr ∈ [1e-4, 0.1] log, hidden ∈ {4, 8}"
    assert [r["matrix_id"] for r in body["runs"]] == ["01", "02", "03", "04", "05"]
    assert all(1e-4 <= r["params"]["lr"] <= 0.1 for r in body["runs"])
    # The sweep submitted starts exactly those trials (the same seed, an empty history).
    created = post_yaml(client, search_file("random", trials=12))
    assert created.status_code == 201, created.text
    started = client.get(f"/sweeps/{created.json()['id']}").json()["runs"]
    assert [r["params"] for r in started] == [r["params"] for r in body["runs"][:2]]


@pytest.mark.parametrize(
    ("old", "new", "key", "line"),
    [
        ("low: 1.0e-4, high: 0.1", "low: 0.1, high: 0.1", "matrix.lr.low", 8),
        ("low: 1.0e-4, high: 0.1", "low: -1, high: 0.1", "matrix.lr.low", 8),
        ("method: random", "method: bayes", "search.method", 2),
        ("trials: 4", "trials: 0", "search.trials", 3),
        ("metric: validation_loss", "metric: accuracy_svc", "search.metric", 4),
        ("method: random", "method: grid", "matrix.lr", 8),
        ("  hidden: [4, 8]\n", "  hidden: [4, 8]\n  $filter: ${hidden} > 8\n", "$filter", 10),
    ],
)
def test_bad_search_input_is_a_422_naming_key_and_line(
    client: TestClient, old: str, new: str, key: str, line: int
) -> None:
    text = search_file("random")
    assert old in text
    answer = post_yaml(client, text.replace(old, new))
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert (detail["key"], detail["line"]) == (key, line), detail


@pytest.mark.slow
@pytest.mark.parametrize(("method", "early_stop"), [("random", False), ("tpe", True)])
def test_a_search_trains_trials_runs_through_a_real_worker(
    client: TestClient, db_url: str, broker_url: str, tmp_path: Path, method: str,
    early_stop: bool,
) -> None:  # fmt: skip
    env = stack_env(
        database_url=db_url, broker_url=broker_url, artifact_dir=tmp_path / "artifacts",
        heartbeat_seconds=0.5, metrics_flush_seconds=0.5,
    )  # fmt: skip
    trials = 5
    with start_worker(env, log_path=tmp_path / "worker.log") as worker:
        created = post_yaml(client, search_file(method, trials, early_stop=early_stop))
        assert created.status_code == 201, created.text
        sweep_id = created.json()["id"]
        assert len(created.json()["runs"]) == 2  # in_flight

        def finished() -> dict[str, Any] | None:
            sweep = client.get(f"/sweeps/{sweep_id}").json()
            return sweep if sweep["status"] == "finished" else None

        sweep = wait_until(finished, timeout=150, interval=0.5, what="the search to finish",
                           diagnostics=worker.log_tail)  # fmt: skip
    runs = sweep["runs"]
    assert [r["matrix_id"] for r in runs] == ["1", "2", "3", "4", "5"]
    assert {r["status"] for r in runs} <= {"succeeded", "pruned"}
    assert "succeeded" in {r["status"] for r in runs}
    search = sweep["search"]
    assert (search["method"], search["started"], search["trials"]) == (method, trials, trials)
    curve = search["best_so_far"]
    assert [p["trial"] for p in curve] == [1, 2, 3, 4, 5]
    bests = [p["best"] for p in curve if p["best"] is not None]
    assert bests == sorted(bests, reverse=True)  # validation_loss: lower is better
    succeeded = [p["value"] for p in curve if p["value"] is not None]
    assert search["best_value"] == min(succeeded)
    login = client.post("/ui/login", data={"token": API_TOKEN, "next": "/ui/"},
                        follow_redirects=False)  # fmt: skip
    assert login.status_code == 303
    page = client.get(f"/ui/sweeps/{sweep_id}")
    assert page.status_code == 200
    assert f"{trials} of {trials} trials started" in page.text
    assert 'id="best-so-far-data"' in page.text
