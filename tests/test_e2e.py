"""Issue 3's "done when": the whole service end to end with real processes.

Real Postgres (SWEEPS_TEST_DATABASE_URL) or SQLite, a real Redis, a real Celery worker process
and the API under uvicorn: POST a two-run sweep of a tiny model on generated data, wait for
both runs, read the learning curves and the comparison table in three formats, then POST the
same file again and see both runs reused instead of retrained.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.db import sweep_text
from tests.support.stack import stack_env, start_api, start_worker, wait_for_runs, wait_until

pytestmark = pytest.mark.slow

TOKEN = "e2e-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_sweep_end_to_end(db_url: str, broker_url: str, tmp_path: Path) -> None:
    env = stack_env(
        database_url=db_url, broker_url=broker_url, artifact_dir=tmp_path / "artifacts",
        api_token=TOKEN, metrics_flush_seconds=0.5, heartbeat_seconds=1,
    )  # fmt: skip
    yaml_text = sweep_text("tiny.yaml")
    with (
        start_worker(env, log_path=tmp_path / "worker.log", runs_per_gpu=2) as worker,
        # two API processes, as docker-compose.yml runs it
        start_api(env, log_path=tmp_path / "api.log", workers=2) as api,
        httpx.Client(base_url=str(api.url), headers=AUTH, timeout=30) as client,
    ):
        logs = lambda: worker.log_tail() + "\n" + api.log_tail()  # noqa: E731
        wait_until(
            lambda: api.log().count("Started server process") == 2,
            timeout=30, what="two API processes", diagnostics=logs,
        )  # fmt: skip

        # -- submit: two runs, both queued and sent to the worker
        created = client.post("/sweeps", content=yaml_text, headers={"Content-Type": "text/plain"})
        assert created.status_code == 201, created.text
        sweep = created.json()
        run_ids = [run["id"] for run in sweep["runs"]]
        assert [run["slug"] for run in sweep["runs"]] == ["hidden:4", "hidden:8"]
        assert sweep["enqueued"] == 2

        wait_for_runs(db_url, run_ids, "succeeded", timeout=240, diagnostics=logs)
        detail = wait_until(
            lambda: (d := client.get(f"/sweeps/{sweep['id']}").json())["status"] == "finished"
            and d,
            timeout=30, what="the sweep to finish", diagnostics=logs,
        )  # fmt: skip
        assert detail["counts"] == {"succeeded": 2}

        # -- one run: outcome, provenance, learning curves
        run = client.get(f"/runs/{run_ids[0]}").json()
        assert (run["status"], run["attempts"], run["inputs_seen"]) == ("succeeded", 1, 2048)
        assert run["device"].split()[0] in ("cpu", "cuda") and run["provenance"]["seed"] == 1
        assert run["latest"]["validation_loss"]["step"] == 2048
        # -- where the time went, recorded by the real worker: the table's train time is the
        # training phase alone, and the sequential phases fit inside the run's total.
        phases = run["phases"]
        for name in (
            "claim",
            "imports",
            "data",
            "build",
            "train",
            "validation",
            "svc_wait",
            "checkpoint",
            "total",
            "svc_fit",
            "svc_fit_heldout",
            "metric_writes",
        ):
            assert name in phases and phases[name] >= 0, (name, phases)
        assert phases["train"] == pytest.approx(run["train_seconds"], abs=0.01)
        sequential = ("claim", "imports", "data", "build", "train", "validation", "svc_wait")
        assert sum(phases[name] for name in sequential) <= phases["total"] + 0.01
        login = client.post("/ui/login", data={"token": TOKEN, "next": "/ui/"})
        assert login.status_code in (200, 303), login.text
        page = client.get(f"/ui/runs/{run_ids[0]}")  # the client keeps the login cookie
        assert page.status_code == 200 and "Where the time went" in page.text
        assert "process start and imports" in page.text and "training" in page.text

        metrics = client.get(f"/runs/{run_ids[0]}/metrics").json()
        series = metrics["series"]
        assert {"train_loss", "validation_loss", "accuracy_argmax", "accuracy_svc"} <= set(series)
        assert [step for step, _ in series["validation_loss"]] == [512, 1024, 1536, 2048]
        assert all(isinstance(value, float) for _, value in series["validation_loss"])
        assert metrics["last_step"] == 2048
        later = client.get(
            f"/runs/{run_ids[0]}/metrics", params={"keys": "validation_loss", "after": 1024}
        ).json()
        assert later["series"] == {"validation_loss": series["validation_loss"][2:]}

        # -- the comparison table in three formats
        table = _table(client, sweep["id"], "json").json()
        names = [column["name"] for column in table["columns"]]
        for name in ("hidden", "validation loss (2,048 steps)", "accuracy (argmax)",
                     "accuracy (svc)", "accuracy (svc held-out)", "model params"):  # fmt: skip
            assert name in names, names
        assert [row["run_id"] for row in table["rows"]] == run_ids
        assert all(0 <= row["values"]["accuracy (svc)"] <= 1 for row in table["rows"])

        markdown = _table(client, sweep["id"], "md").text
        header, rule, *rows = markdown.strip().splitlines()
        assert "| hidden | validation loss (2,048 steps) |" in header
        assert set(rule) <= set("|-: ") and len(rows) == 2
        cells = [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]
        assert [row[:3] for row in cells] == [[str(run_ids[0]), "succeeded", "4"],
                                              [str(run_ids[1]), "succeeded", "8"]]  # fmt: skip
        loss = names.index("validation loss (2,048 steps)")
        # The lower validation loss is bold, the other is not.
        assert sorted(cell[loss].startswith("**") for cell in cells) == [False, True]

        parsed = list(csv.DictReader(io.StringIO(_table(client, sweep["id"], "csv").text)))
        assert [row["hidden"] for row in parsed] == ["4", "8"]
        assert float(parsed[0]["accuracy (argmax)"]) == pytest.approx(
            table["rows"][0]["values"]["accuracy (argmax)"]
        )

        # -- the same file again: both runs reused, nothing sent to the worker
        again = client.post("/sweeps", content=yaml_text, headers={"Content-Type": "text/plain"})
        assert again.status_code == 201, again.text
        second = again.json()
        assert [r["status"] for r in second["runs"]] == ["reused", "reused"]
        assert [r["reused_from_id"] for r in second["runs"]] == run_ids
        assert second["enqueued"] == 0
        reused_table = _table(client, second["id"], "json").json()
        assert [r["values"]["accuracy (svc)"] for r in reused_table["rows"]] == [
            r["values"]["accuracy (svc)"] for r in table["rows"]
        ]
        assert worker.alive() and api.alive()
    assert "succeeded" in worker.log()


def _table(client: httpx.Client, sweep_id: int, fmt: str) -> Any:
    response = client.get(f"/sweeps/{sweep_id}/table", params={"format": fmt})
    assert response.status_code == 200, response.text
    return response
