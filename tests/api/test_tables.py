"""GET /sweeps/{id}/table and GET /compare in JSON, Markdown and CSV."""

from __future__ import annotations

import csv
import io

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from .conftest import TINY_YAML, finish_run, post_yaml

LOSS = "validation loss (2,000,000 steps)"


def _results(loss: float, argmax: float, svc: float, params: int) -> dict:
    return {
        "validation_loss": (2_000_000, loss),
        "accuracy_argmax": (2_000_000, argmax),
        "accuracy_svc": (2_000_000, svc),
        "accuracy_svc_heldout": (2_000_000, svc - 0.01),
        "model_params": (0, float(params)),
        "train_seconds": (2_000_000, 754.2),
        "throughput": (2_000_000, 2651.9),
    }


def _finished_sweep(client: TestClient, session: Session) -> tuple[int, list[int]]:
    created = post_yaml(client).json()
    ids = [r["id"] for r in created["runs"]]
    finish_run(session, ids[0], latest=_results(0.01429, 0.9063, 0.9076, 2_185_610))
    finish_run(session, ids[1], latest=_results(0.01518, 0.8993, 0.9109, 4_469_178))
    return created["id"], ids


def test_json_table(client: TestClient, session: Session) -> None:
    sweep_id, ids = _finished_sweep(client, session)
    table = client.get(f"/sweeps/{sweep_id}/table").json()
    names = [c["name"] for c in table["columns"]]
    assert names == [
        "run",
        "status",
        "lr",
        LOSS,
        "accuracy (argmax)",
        "accuracy (svc)",
        "accuracy (svc held-out)",
        "model params",
        "train time",
        "throughput",
    ]
    first, second = table["rows"]
    assert first["run_id"] == ids[0] and first["values"]["lr"] == 0.1
    assert first["values"]["model params"] == 2_185_610
    assert first["cells"]["model params"] == "2,185,610"
    assert first["cells"]["train time"] == "12m 34s"
    assert first["cells"]["throughput"] == "2,652/s"
    assert first["best"] == [LOSS, "accuracy (argmax)"]
    assert second["best"] == ["accuracy (svc)", "accuracy (svc held-out)"]


def test_markdown_bold_best_right_aligned(client: TestClient, session: Session) -> None:
    sweep_id, ids = _finished_sweep(client, session)
    response = client.get(f"/sweeps/{sweep_id}/table", params={"format": "md"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/markdown")
    header, rule, first, second = response.text.strip().splitlines()
    assert header.startswith("| run | status | lr | validation loss (2,000,000 steps) |")
    assert rule.startswith("|---:|:---|---:|---:|")
    assert f"| {ids[0]} | succeeded | 0.1 | **0.01429** | **0.9063** | 0.9076 |" in first
    assert "| 2,185,610 | 12m 34s | 2,652/s |" in first
    assert "| **0.9109** | **0.9009** | 4,469,178 |" in second


def test_csv_and_sort(client: TestClient, session: Session) -> None:
    sweep_id, ids = _finished_sweep(client, session)
    response = client.get(
        f"/sweeps/{sweep_id}/table", params={"format": "csv", "sort": "-accuracy (svc)"}
    )
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [int(r["run"]) for r in rows] == [ids[1], ids[0]]
    assert rows[0]["model params"] == "4469178" and rows[0]["validation inputs"] == "2000000"
    by_loss = client.get(f"/sweeps/{sweep_id}/table", params={"sort": "validation_loss"}).json()
    assert [r["run_id"] for r in by_loss["rows"]] == ids
    bad = client.get(f"/sweeps/{sweep_id}/table", params={"sort": "1; DROP TABLE runs"})
    assert bad.status_code == 422 and "cannot sort by" in bad.json()["detail"]
    assert client.get(f"/sweeps/{sweep_id}/table", params={"format": "xls"}).status_code == 422
    assert client.get("/sweeps/999/table").status_code == 404


def test_reused_row_shows_its_source_results(client: TestClient, session: Session) -> None:
    _, ids = _finished_sweep(client, session)
    again = post_yaml(client).json()
    table = client.get(f"/sweeps/{again['id']}/table").json()
    assert [r["status"] for r in table["rows"]] == ["reused", "reused"]
    assert [r["reused_from_id"] for r in table["rows"]] == ids
    assert table["rows"][0]["cells"][LOSS] == "0.01429"


def test_compare_across_sweeps(client: TestClient, session: Session) -> None:
    first_sweep, ids = _finished_sweep(client, session)
    other = post_yaml(client, TINY_YAML.replace("lr: [0.1, 0.01]", "lr: [0.5]")).json()
    finish_run(session, other["runs"][0]["id"], latest=_results(0.012, 0.93, 0.94, 1_000))
    table = client.get("/compare", params={"runs": f"{ids[1]}", "sweeps": str(other["id"])}).json()
    assert [r["run_id"] for r in table["rows"]] == [ids[1], other["runs"][0]["id"]]
    assert [c["name"] for c in table["columns"]][:4] == ["run", "sweep", "status", "lr"]
    assert table["rows"][1]["best"][:2] == [LOSS, "accuracy (argmax)"]
    md = client.get("/compare", params={"sweeps": f"{first_sweep},{other['id']}", "format": "md"})
    assert len(md.text.strip().splitlines()) == 2 + 3
    missing = client.get("/compare", params={"runs": "1,99999"})
    assert missing.status_code == 404 and "run 99999 does not exist" in missing.json()["detail"]
    assert client.get("/compare").status_code == 422
    bad = client.get("/compare", params={"runs": "1,x"})
    assert bad.status_code == 422 and "'x'" in bad.json()["detail"]
