"""GET /runs/{id}/metrics: series per key as [inputs, value], `after`, `max_points`, keys."""

from __future__ import annotations

import math

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from shared.db.models import Metric, Run, RunStatus
from shared.domain.metrics import downsample
from shared.domain.runs import claim_run
from worker.reporter import Reporter

from .conftest import finish_run, post_yaml


def _run_with_curves(client: TestClient, session: Session) -> int:
    run_id = post_yaml(client).json()["runs"][0]["id"]
    train = [(step, 1.0 / step) for step in range(1000, 101_000, 1000)]  # 100 points
    valid = [(20_000, 0.5), (40_000, 0.4), (60_000, 0.3)]
    finish_run(
        session, run_id,
        series={"train_loss": train, "validation_loss": valid},
        latest={"train_loss": train[-1], "validation_loss": valid[-1]},
    )  # fmt: skip
    return run_id


def test_series_per_key_in_step_order(client: TestClient, session: Session) -> None:
    run_id = _run_with_curves(client, session)
    body = client.get(f"/runs/{run_id}/metrics").json()
    assert body["run_id"] == body["source_run_id"] == run_id
    assert set(body["series"]) == {"train_loss", "validation_loss"}
    assert body["series"]["validation_loss"] == [[20000, 0.5], [40000, 0.4], [60000, 0.3]]
    assert len(body["series"]["train_loss"]) == 100
    assert body["series"]["train_loss"][0] == [1000, 0.001]
    assert body["last_step"] == 100_000


def test_keys_filter_and_unknown_key(client: TestClient, session: Session) -> None:
    run_id = _run_with_curves(client, session)
    body = client.get(f"/runs/{run_id}/metrics", params={"keys": "validation_loss"}).json()
    assert list(body["series"]) == ["validation_loss"]
    both = client.get(
        f"/runs/{run_id}/metrics", params=[("keys", "validation_loss"), ("keys", "accuracy_svc")]
    ).json()
    assert both["series"]["accuracy_svc"] == []  # known key, nothing recorded yet
    response = client.get(f"/runs/{run_id}/metrics", params={"keys": "loss'; DROP TABLE metrics"})
    assert response.status_code == 422
    assert "unknown metric key" in response.json()["detail"]
    assert "validation_loss" in response.json()["detail"]
    assert client.get("/runs/999/metrics").status_code == 404


def test_after_returns_only_newer_points(client: TestClient, session: Session) -> None:
    run_id = _run_with_curves(client, session)
    body = client.get(f"/runs/{run_id}/metrics", params={"after": 40_000}).json()
    assert body["series"]["validation_loss"] == [[60000, 0.3]]
    assert [p[0] for p in body["series"]["train_loss"]][:2] == [41_000, 42_000]
    empty = client.get(f"/runs/{run_id}/metrics", params={"after": body["last_step"]}).json()
    assert empty["series"] == {} and empty["last_step"] is None


def test_max_points_keeps_ends_and_extremes(client: TestClient, session: Session) -> None:
    run_id = _run_with_curves(client, session)
    # A spike in the middle must survive downsampling.
    session.add(Metric(run_id=run_id, key="train_loss", step=50_500, value=9.0))
    session.commit()
    body = client.get(f"/runs/{run_id}/metrics", params={"max_points": 10}).json()
    train = body["series"]["train_loss"]
    assert len(train) <= 10
    assert train[0] == [1000, 0.001] and train[-1][0] == 100_000
    assert [50_500, 9.0] in train
    assert [s for s, _ in train] == sorted(s for s, _ in train)
    assert len(body["series"]["validation_loss"]) == 3  # under the limit: untouched
    assert client.get(f"/runs/{run_id}/metrics", params={"max_points": 1}).status_code == 422


def test_downsample_bounds() -> None:
    points = [(i, float(i % 7)) for i in range(1000)]
    for limit in (2, 3, 4, 5, 50, 999):
        kept = downsample(points, limit)
        assert len(kept) <= limit
        assert kept[0] == points[0] and kept[-1] == points[-1]
    assert downsample(points, 1000) == points


def test_reused_run_serves_its_source_metrics_and_inf_is_null(
    client: TestClient, session: Session
) -> None:
    source = _run_with_curves(client, session)
    session.add(
        Metric(run_id=source, key="learnrate", step=1000, value=math.inf)
    )  # diverged; SQLite stores no NaN
    other = post_yaml(client).json()["runs"][1]["id"]
    finish_run(session, other)
    reused = post_yaml(client).json()["runs"][0]
    assert reused["status"] == "reused" and reused["reused_from_id"] == source
    body = client.get(f"/runs/{reused['id']}/metrics").json()
    assert body["run_id"] == reused["id"] and body["source_run_id"] == source
    assert body["series"]["validation_loss"][-1] == [60000, 0.3]
    assert body["series"]["learnrate"] == [[1000, None]]
    run = session.get(Run, reused["id"])
    assert run is not None and run.inputs_seen == 64


def test_a_finished_runs_series_answer_304_to_their_etag(
    client: TestClient, session: Session
) -> None:
    run_id = _run_with_curves(client, session)
    url = f"/runs/{run_id}/metrics"
    first = client.get(url)
    etag = first.headers["etag"]
    assert etag.startswith('W/"') and first.headers["cache-control"] == "private, no-cache"
    again = client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag
    listed = client.get(url, headers={"If-None-Match": f'"other", {etag.removeprefix("W/")}'})
    assert listed.status_code == 304
    stale = client.get(url, headers={"If-None-Match": 'W/"0123"'})
    assert stale.status_code == 200 and stale.json() == first.json()
    # Another query is another representation, with its own tag.
    thin = client.get(url, params={"max_points": 10}, headers={"If-None-Match": etag})
    assert thin.status_code == 200 and thin.headers["etag"] != etag


def test_a_running_runs_etag_changes_as_points_arrive(client: TestClient, session: Session) -> None:
    run_id = post_yaml(client).json()["runs"][0]["id"]
    url = f"/runs/{run_id}/metrics"
    # worker-1's lease ends at once (a zero lease), so worker-2 can take the run over.
    assert claim_run(session, run_id, "worker-1", 0.0) is not None
    session.commit()

    def report(owner: str, *points: tuple[str, int, float]) -> Reporter:
        lease = 0.0 if owner == "worker-1" else 60.0
        reporter = Reporter(run_id, owner, lease_seconds=lease, flush_seconds=3600,
                            heartbeat_seconds=3600)  # fmt: skip
        reporter("metrics", points=list(points))
        reporter.write_pending()
        return reporter

    report("worker-1", ("train_loss", 16, 0.5))
    first = client.get(url)
    assert first.json()["series"] == {"train_loss": [[16, 0.5]]}
    tag = first.headers["etag"]
    assert client.get(url, headers={"If-None-Match": tag}).status_code == 304
    report("worker-1", ("train_loss", 32, 0.4))
    second = client.get(url, headers={"If-None-Match": tag})
    assert second.status_code == 200 and second.json()["series"]["train_loss"][-1] == [32, 0.4]
    tag = second.headers["etag"]
    # Another attempt (the first worker died) re-writes a step it had: same count, same last
    # step, other value; the tag must still change.
    assert claim_run(session, run_id, "worker-2", 60) is not None
    session.commit()
    reporter = report("worker-2", ("train_loss", 32, 0.9))
    third = client.get(url, headers={"If-None-Match": tag})
    assert third.status_code == 200 and third.json()["series"]["train_loss"][-1] == [32, 0.9]
    assert reporter.finish(RunStatus.SUCCEEDED)
    done = client.get(url, headers={"If-None-Match": third.headers["etag"]})
    assert done.status_code == 200  # finished: a new version, stable from now on
    assert client.get(url, headers={"If-None-Match": done.headers["etag"]}).status_code == 304
