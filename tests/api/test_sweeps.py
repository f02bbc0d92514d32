"""POST /sweeps (YAML and JSON), preview, reuse and force, listing, and the errors people hit."""

from __future__ import annotations

import contextlib
import select as io_select
import socket
import threading
import time

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.db.models import Run, RunStatus, Sweep

from .conftest import TINY_YAML, finish_run, post_yaml, queued_run_ids


def _count(session: Session, model: type) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(model)) or 0


def test_post_yaml_stores_runs_then_enqueues_each(
    client: TestClient, session: Session, queue: redis.Redis
) -> None:
    response = post_yaml(client)
    assert response.status_code == 201, response.text
    body = response.json()
    assert [r["slug"] for r in body["runs"]] == ["lr:0.1", "lr:0.01"]
    assert [r["matrix_id"] for r in body["runs"]] == ["1", "2"]
    assert {r["status"] for r in body["runs"]} == {"queued"}
    assert body["enqueued"] == 2 and body["warnings"] == []
    assert body["name"] == "tiny/lin_lr:0.1" or body["name"].startswith("tiny/lin")
    ids = [r["id"] for r in body["runs"]]
    assert queued_run_ids(queue) == ids
    runs = session.scalars(select(Run).order_by(Run.id)).all()
    assert [r.id for r in runs] == ids
    assert all(r.enqueued_at is not None for r in runs)
    assert runs[0].config["learnrate"] == 0.1 and runs[0].max_inputs == 64


def test_post_json_with_name_and_text_plain(client: TestClient, queue: redis.Redis) -> None:
    response = client.post("/sweeps", json={"yaml": TINY_YAML, "name": "my sweep"})
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "my sweep"
    response = client.post(
        "/sweeps?force=true&name=plain", content=TINY_YAML.encode(),
        headers={"Content-Type": "text/plain; charset=utf-8"},
    )  # fmt: skip
    assert response.status_code == 201 and response.json()["name"] == "plain"
    assert len(queued_run_ids(queue)) == 4


def test_preview_stores_nothing(client: TestClient, session: Session, queue: redis.Redis) -> None:
    response = client.post(
        "/sweeps/preview", content=TINY_YAML, headers={"Content-Type": "application/x-yaml"}
    )
    assert response.status_code == 200, response.text
    preview = response.json()
    assert [r["slug"] for r in preview["runs"]] == ["lr:0.1", "lr:0.01"]
    assert all(len(r["config_hash"]) == 64 for r in preview["runs"])
    assert preview["would_train"] == 2 and preview["would_reuse"] == 0
    assert preview["matrix_keys"] == ["lr"]
    assert _count(session, Sweep) == 0 and _count(session, Run) == 0
    assert queue.llen("runs") == 0


def test_succeeded_config_is_reused_unless_forced(
    client: TestClient, session: Session, queue: redis.Redis
) -> None:
    first = post_yaml(client).json()
    done = first["runs"][0]["id"]
    finish_run(session, done, latest={"validation_loss": (64, 0.25)})
    queue.delete("runs")

    preview = client.post("/sweeps/preview", json={"yaml": TINY_YAML}).json()
    assert [r["reuse_from_id"] for r in preview["runs"]] == [done, None]
    # The first sweep's other run is still queued: the same configuration is linked to it
    # (trained once), not queued a second time.
    waiting = first["runs"][1]["id"]
    assert [r["link_to_id"] for r in preview["runs"]] == [None, waiting]

    second = post_yaml(client).json()
    assert [r["status"] for r in second["runs"]] == ["reused", "queued"]
    assert [r["reused_from_id"] for r in second["runs"]] == [done, waiting]
    assert queued_run_ids(queue) == [] and second["enqueued"] == 0
    detail = client.get(f"/sweeps/{second['id']}").json()
    assert detail["counts"] == {"reused": 1, "queued": 1}
    assert detail["progress"] == pytest.approx(0.5)
    reused = client.get(f"/runs/{second['runs'][0]['id']}").json()
    assert reused["latest"]["validation_loss"] == {"step": 64, "value": 0.25}

    forced = post_yaml(client, force="true").json()
    assert [r["status"] for r in forced["runs"]] == ["queued", "queued"]
    assert forced["enqueued"] == 2


def test_all_runs_reused_finishes_the_sweep_at_once(client: TestClient, session: Session) -> None:
    first = post_yaml(client).json()
    for run in first["runs"]:
        finish_run(session, run["id"])
    second = post_yaml(client).json()
    assert second["status"] == "finished" and second["enqueued"] == 0
    detail = client.get(f"/sweeps/{second['id']}").json()
    assert detail["finished_at"] is not None and detail["progress"] == 1.0


def test_list_is_paginated_newest_first(client: TestClient) -> None:
    ids = [post_yaml(client, force="true").json()["id"] for _ in range(3)]
    page = client.get("/sweeps", params={"limit": 2}).json()
    assert page["total"] == 3 and page["limit"] == 2
    assert [s["id"] for s in page["items"]] == ids[::-1][:2]
    assert page["items"][0]["counts"] == {"queued": 2} and page["items"][0]["run_count"] == 2
    rest = client.get("/sweeps", params={"limit": 2, "offset": 2}).json()
    assert [s["id"] for s in rest["items"]] == [ids[0]]
    assert client.get("/sweeps", params={"limit": 0}).status_code == 422


def test_get_sweep_shows_counts_progress_and_runs(client: TestClient, session: Session) -> None:
    created = post_yaml(client).json()
    run = session.get(Run, created["runs"][0]["id"])
    run.status, run.inputs_seen = RunStatus.RUNNING, 70  # overshoot by part of a batch
    session.commit()
    detail = client.get(f"/sweeps/{created['id']}").json()
    assert detail["counts"] == {"running": 1, "queued": 1}
    assert detail["progress"] == pytest.approx(0.5)  # capped at max_inputs per run
    assert detail["yaml_text"] == TINY_YAML and detail["matrix_keys"] == ["lr"]
    assert [r["inputs_seen"] for r in detail["runs"]] == [70, 0]
    assert client.get("/sweeps/999").status_code == 404
    assert client.get("/sweeps/999").json()["detail"] == "sweep 999 does not exist"


# ---------------------------------------------------------------- errors


def test_invalid_yaml_is_422_naming_line_key_and_value(
    client: TestClient, session: Session
) -> None:
    bad = TINY_YAML.replace("optimizer: SGD", "optimizer: SGDD")
    response = post_yaml(client, bad)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail["key"] == "optimizer" and detail["value"] == "SGDD" and detail["line"] == 10
    assert "did you mean 'SGD'" in detail["message"]
    broken = post_yaml(client, "matrix: [1,\nexperiment_name: x\n").json()["detail"]
    assert broken["line"] is not None and "invalid YAML" in broken["message"]
    assert _count(session, Sweep) == 0


def test_empty_matrix_is_422(client: TestClient) -> None:
    response = post_yaml(client, TINY_YAML.replace("[0.1, 0.01]", "[]"))
    assert response.status_code == 422
    assert "no runs" in response.json()["detail"]["message"]


@pytest.mark.parametrize(
    ("change", "key", "words"),
    [
        (
            ("experiment_name: tiny", 'experiment_name: "nul\\0"\nx_: tiny'),
            "experiment_name",
            "NUL",
        ),
        (("batch_size: 4", "batch_size: 4\nglobals: {X: .inf}"), "globals", "inf"),
        (("max_inputs: 64", "max_inputs: 99999999999999999999"), "max_inputs", "at most"),
    ],
)
def test_values_no_column_can_hold_are_422(
    client: TestClient, session: Session, change: tuple[str, str], key: str, words: str
) -> None:
    text = TINY_YAML.replace(*change).replace("x_: tiny/lin_${matrix_slug}\n", "")
    for path in ("/sweeps", "/sweeps/preview"):
        response = client.post(path, content=text, headers={"Content-Type": "application/x-yaml"})
        assert response.status_code == 422, response.text
        detail = response.json()["detail"]
        assert detail["key"] == key and words in detail["message"]
    assert _count(session, Sweep) == 0


def test_non_utf8_is_400(client: TestClient) -> None:
    body = TINY_YAML.encode().replace(b"tiny/lin", b"tiny/l\xe9n")
    response = client.post("/sweeps", content=body, headers={"Content-Type": "text/plain"})
    assert response.status_code == 400
    assert "not UTF-8: byte 0xe9" in response.json()["detail"]
    assert "line 3" in response.json()["detail"]


@pytest.mark.parametrize("content_type", ["application/xml", "multipart/form-data; boundary=x"])
def test_unsupported_content_type_is_415(client: TestClient, content_type: str) -> None:
    response = client.post("/sweeps", content=TINY_YAML, headers={"Content-Type": content_type})
    assert response.status_code == 415
    assert "application/x-yaml" in response.json()["detail"]


def test_bad_json_is_400_and_wrong_shape_422(client: TestClient) -> None:
    response = client.post(
        "/sweeps", content=b'{"yaml": ', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400 and "not valid JSON" in response.json()["detail"]
    response = client.post("/sweeps", json={"yml": TINY_YAML})
    assert response.status_code == 422 and "yaml: Field required" in response.json()["detail"]


def test_body_over_the_limit_is_413(
    api_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, session: Session
) -> None:
    from api.main import create_app
    from shared.settings import get_settings

    monkeypatch.setenv("SWEEPS_MAX_BODY_BYTES", "1000")
    get_settings.cache_clear()
    headers = {"Authorization": f"Bearer {api_env['SWEEPS_API_TOKEN']}"}
    with TestClient(create_app(), headers=headers) as small:
        response = small.post(
            "/sweeps", content=b"x" * 1001, headers={"Content-Type": "text/plain"}
        )
        assert response.status_code == 413
        assert "limit is 1,000 bytes" in response.json()["detail"]

        def chunks():  # no Content-Length: counted as it streams
            for _ in range(100):
                yield b"#" * 100 + b"\n"

        response = small.post(
            "/sweeps/preview", content=chunks(), headers={"Content-Type": "text/plain"}
        )
        assert response.status_code == 413
        assert "limit is 1,000 bytes" in response.json()["detail"]
    assert _count(session, Sweep) == 0


def _read_reply(sock: socket.socket) -> str:
    """One HTTP response (headers and a Content-Length body), read off a raw socket."""
    data = b""
    with contextlib.suppress(OSError):  # a reset after the reply was sent ends the read
        while b"\r\n\r\n" not in data or len(data) < _reply_length(data):
            more = sock.recv(65536)
            if not more:
                break
            data += more
    return data.decode(errors="replace")


def _reply_length(data: bytes) -> int:
    head, _, _ = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(head) + 4 + int(line.split(b":")[1])
    return len(data) + 1


def test_100_mb_body_is_refused_before_it_is_read(api_env: dict[str, str]) -> None:
    """A real server: a 100 MB Content-Length gets its 413 after the headers alone, and a
    chunked body (no Content-Length) is cut off once it passes the limit."""
    import uvicorn

    from api.main import create_app
    from tests.conftest import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(), port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                b"POST /sweeps HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                + f"Authorization: Bearer {api_env['SWEEPS_API_TOKEN']}\r\n".encode()
                + b"Content-Length: 100000000\r\n\r\n"
                + b"x" * 1000
            )
            reply = _read_reply(sock)
        assert reply.startswith("HTTP/1.1 413"), reply
        assert "SWEEPS_MAX_BODY_BYTES" in reply
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                b"POST /sweeps/preview HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                + f"Authorization: Bearer {api_env['SWEEPS_API_TOKEN']}\r\n".encode()
                + b"Transfer-Encoding: chunked\r\n\r\n"
            )
            chunk = b"%x\r\n%s\r\n" % (100_000, b"#" * 100_000)
            sent = 0
            with contextlib.suppress(OSError):  # the server may close while we still send
                # Up to 100 MB; the limit is 2 MB, so the answer must come long before the end.
                while sent < 1000 and not io_select.select([sock], [], [], 0)[0]:
                    sock.sendall(chunk)
                    sent += 1
            reply = _read_reply(sock)
        assert reply.startswith("HTTP/1.1 413"), reply
        assert sent < 1000  # refused long before the 100 MB were sent
    finally:
        server.should_exit = True
        thread.join(10)


def test_unreachable_database_is_503_with_a_clear_message(
    api_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from api.main import create_app
    from shared.settings import get_settings
    from tests.conftest import free_port

    down = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing"
    monkeypatch.setenv("SWEEPS_DATABASE_URL", down)
    get_settings.cache_clear()
    headers = {"Authorization": f"Bearer {api_env['SWEEPS_API_TOKEN']}"}
    with TestClient(create_app(), headers=headers) as offline:  # starts although the DB is down
        response = offline.get("/sweeps")
        assert response.status_code == 503
        assert response.json()["detail"].startswith("the database is unavailable")
        assert "postgres@" not in response.text
        response = post_yaml(offline)
        assert response.status_code == 503
        health = offline.get("/healthz")
        assert health.status_code == 503
        assert health.json()["database"]["ok"] is False and health.json()["broker"]["ok"] is True
