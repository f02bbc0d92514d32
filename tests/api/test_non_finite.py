"""NaN and infinite metrics written by the worker's reporter are kept and read back as such."""

from __future__ import annotations

import csv
import io
import math

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.db.models import LatestMetric, Metric, RunStatus
from shared.domain.runs import claim_run
from worker.reporter import Reporter

from .conftest import post_yaml

NAN, INF = math.nan, math.inf
POINTS = [
    ("train_loss", 16, 0.5),
    ("train_loss", 32, NAN),
    ("train_loss", 48, INF),
    ("train_loss", 56, -INF),
    ("train_loss", 64, 0.25),
    ("validation_loss", 64, NAN),
    ("accuracy_argmax", 64, 0.75),
    ("throughput", 64, INF),
]


def _reported_run(client: TestClient, session: Session) -> int:
    """A run trained as a worker would record it: points through a Reporter, then succeeded."""
    run_id = post_yaml(client).json()["runs"][0]["id"]
    assert claim_run(session, run_id, "worker-1", 60) is not None
    session.commit()
    reporter = Reporter(run_id, "worker-1", lease_seconds=60, flush_seconds=3600,
                        heartbeat_seconds=3600)  # fmt: skip
    reporter("metrics", points=POINTS[:4])
    reporter.write_pending()
    reporter("metrics", points=POINTS[4:])
    assert reporter.finish(RunStatus.SUCCEEDED, summary={"inputs": 64})
    return run_id


def test_nan_is_stored_flagged_and_infinity_as_it_is(client: TestClient, session: Session) -> None:
    run_id = _reported_run(client, session)
    rows = session.execute(
        select(Metric.key, Metric.step, Metric.value, Metric.is_nan)
        .where(Metric.run_id == run_id)
        .order_by(Metric.key, Metric.step)
    ).all()
    assert len(rows) == len(POINTS)  # nothing dropped
    stored = {(key, step): (value, is_nan) for key, step, value, is_nan in rows}
    assert stored[("train_loss", 32)] == (0.0, True)
    assert stored[("train_loss", 48)] == (INF, False)
    assert stored[("train_loss", 56)] == (-INF, False)
    assert stored[("train_loss", 64)] == (0.25, False)
    latest = session.execute(
        select(LatestMetric.key, LatestMetric.value, LatestMetric.is_nan).where(
            LatestMetric.run_id == run_id
        )
    ).all()
    assert {key: (value, is_nan) for key, value, is_nan in latest}["validation_loss"] == (0, True)


def test_a_nan_rewritten_as_a_number_loses_its_flag(client: TestClient, session: Session) -> None:
    from shared.db.metric_writes import upsert_metrics

    run_id = _reported_run(client, session)
    upsert_metrics(session, run_id, [("train_loss", 32, 0.4), ("validation_loss", 64, 0.3)])
    session.commit()
    body = client.get(f"/runs/{run_id}/metrics", params={"keys": "train_loss"}).json()
    assert body["series"]["train_loss"][1] == [32, 0.4]
    assert body["non_finite"] == {"train_loss": [[48, "Infinity"], [56, "-Infinity"]]}
    detail = client.get(f"/runs/{run_id}").json()
    assert detail["latest"]["validation_loss"] == {"step": 64, "value": 0.3}
    assert detail["non_finite"] == {"throughput": "Infinity"}


def test_series_give_null_and_name_what_it_was(client: TestClient, session: Session) -> None:
    run_id = _reported_run(client, session)
    response = client.get(f"/runs/{run_id}/metrics")
    assert response.status_code == 200
    body = response.json()
    assert body["series"]["train_loss"] == [[16, 0.5], [32, None], [48, None], [56, None],
                                            [64, 0.25]]  # fmt: skip
    assert body["series"]["validation_loss"] == [[64, None]]
    assert body["non_finite"] == {
        "throughput": [[64, "Infinity"]],
        "train_loss": [[32, "NaN"], [48, "Infinity"], [56, "-Infinity"]],
        "validation_loss": [[64, "NaN"]],
    }
    assert body["last_step"] == 64
    # Downsampled away or not, a non-finite point stays named.
    thin = client.get(f"/runs/{run_id}/metrics", params={"max_points": 2}).json()
    assert thin["series"]["train_loss"] == [[16, 0.5], [64, 0.25]]
    assert thin["non_finite"]["train_loss"] == body["non_finite"]["train_loss"]
    # A bucket that holds a NaN keeps it (the chart shows the gap) and its highest number.
    kept = client.get(f"/runs/{run_id}/metrics", params={"max_points": 4}).json()
    assert kept["series"]["train_loss"] == [[16, 0.5], [32, None], [48, None], [64, 0.25]]


def test_run_detail_names_a_nan_latest_value(client: TestClient, session: Session) -> None:
    run_id = _reported_run(client, session)
    detail = client.get(f"/runs/{run_id}").json()
    assert detail["latest"]["validation_loss"] == {"step": 64, "value": None}
    assert detail["latest"]["throughput"] == {"step": 64, "value": None}
    assert detail["latest"]["accuracy_argmax"] == {"step": 64, "value": 0.75}
    assert detail["non_finite"] == {"validation_loss": "NaN", "throughput": "Infinity"}


def test_tables_show_nan(client: TestClient, session: Session) -> None:
    run_id = _reported_run(client, session)
    sweep_id = client.get(f"/runs/{run_id}").json()["sweep_id"]
    table = client.get(f"/sweeps/{sweep_id}/table").json()
    row = next(r for r in table["rows"] if r["run_id"] == run_id)
    loss = next(c["name"] for c in table["columns"] if c["key"] == "validation_loss")
    speed = next(c["name"] for c in table["columns"] if c["key"] == "throughput")
    assert row["values"][loss] is None and row["cells"][loss] == "nan"
    assert row["values"][speed] is None and row["cells"][speed] == "inf/s"
    assert row["cells"]["accuracy (argmax)"] == "0.7500"
    markdown = client.get(f"/sweeps/{sweep_id}/table", params={"format": "md"}).text
    assert "| nan |" in markdown
    text = client.get(f"/sweeps/{sweep_id}/table", params={"format": "csv"}).text
    record = next(r for r in csv.DictReader(io.StringIO(text)) if r["run"] == str(run_id))
    assert record[loss] == "nan" and record[speed] == "inf"
