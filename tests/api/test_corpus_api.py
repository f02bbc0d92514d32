"""The malformed-sweep corpus over HTTP: a clear 4xx naming the problem, and nothing stored."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shared.db.models import ApiToken, Run, Sweep

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
MANIFEST: dict[str, dict[str, Any]] = yaml.safe_load((CORPUS / "manifest.yaml").read_text())


def _message(response: Any) -> str:
    detail = response.json()["detail"]
    return detail["message"] if isinstance(detail, dict) else str(detail)


def _nothing_stored(session: Session, queue: redis.Redis) -> None:
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(Sweep)) == 0
    assert session.scalar(select(func.count()).select_from(Run)) == 0
    assert queue.llen("runs") == 0


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_corpus_file_gets_a_clear_4xx_and_stores_nothing(
    name: str, client: TestClient, session: Session, queue: redis.Redis
) -> None:
    expected = MANIFEST[name]
    status = expected.get("api_status", 422)
    data = (CORPUS / name).read_bytes()
    bodies: list[dict[str, Any]] = [
        {"content": data, "headers": {"Content-Type": "application/x-yaml"}},
        {"content": data, "headers": {"Content-Type": "text/plain; charset=utf-8"}},
    ]
    if status == 422:  # text that JSON can carry: the same answer through {"yaml": ...}
        payload = json.dumps({"yaml": data.decode("utf-8"), "name": "corpus"})
        bodies.append({"content": payload, "headers": {"Content-Type": "application/json"}})
    for path in ("/sweeps/preview", "/sweeps"):
        for body in bodies:
            response = client.post(path, **body)
            assert response.status_code == status, (path, response.text[:500])
            message = _message(response)
            for word in expected["words"]:
                assert word in message, (path, word, message)
            detail = response.json()["detail"]
            if status == 422 and not expected.get("zero_runs"):
                for field in ("line", "column", "key", "run"):
                    if field in expected:
                        assert detail[field] == expected[field], (path, field, detail)
                assert detail["location"] in ("", None) or isinstance(detail["location"], str)
    _nothing_stored(session, queue)


def test_corpus_errors_do_not_echo_the_token(client: TestClient) -> None:
    from .conftest import API_TOKEN

    for name in sorted(MANIFEST)[:20]:
        response = client.post(
            "/sweeps", content=(CORPUS / name).read_bytes(), headers={"Content-Type": "text/plain"}
        )
        assert API_TOKEN not in response.text


# --- a 100 MB body -------------------------------------------------------------------------

CHUNK = 64 * 1024
HUNDRED_MB = 100 * 1024 * 1024


async def _call(app: Any, headers: list[tuple[bytes, bytes]]) -> tuple[int, bytes, int]:
    """POST /sweeps straight into the ASGI app, offering a 100 MB body chunk by chunk.

    Returns (status, response body, bytes the app pulled): the app must answer 413 having
    pulled only about its limit, never the whole body.
    """
    pulled = 0
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/sweeps",
        "raw_path": b"/sweeps",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    line = b"# padding " + b"x" * (CHUNK - 11) + b"\n"

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        if pulled >= HUNDRED_MB:
            return {"type": "http.request", "body": b"", "more_body": False}
        pulled += CHUNK
        return {"type": "http.request", "body": line, "more_body": pulled < HUNDRED_MB}

    status = 0
    body = b""

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, body
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            body += message.get("body", b"")

    async with app.router.lifespan_context(app):
        await app(scope, receive, send)
    return status, body, pulled


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_100_mb_body_is_413_without_being_read(
    api_env: dict[str, str], declared: bool, session: Session, queue: redis.Redis
) -> None:
    from api.main import create_app

    app = create_app()
    limit = app.state.settings.max_body_bytes
    headers = [
        (b"host", b"testserver"),
        (b"content-type", b"application/x-yaml"),
        (b"authorization", f"Bearer {api_env['SWEEPS_API_TOKEN']}".encode()),
    ]
    if declared:
        headers.append((b"content-length", str(HUNDRED_MB).encode()))
    status, body, pulled = asyncio.run(_call(app, headers))
    assert status == 413
    assert "SWEEPS_MAX_BODY_BYTES" in json.loads(body)["detail"]
    if declared:
        assert pulled == 0  # refused on the header alone
    else:
        assert pulled <= limit + CHUNK  # stopped at the limit, not at 100 MB
    assert pulled < HUNDRED_MB // 10
    _nothing_stored(session, queue)
    # the bootstrap token is the only row the request may have written
    assert [t.name for t in session.scalars(select(ApiToken))] == ["bootstrap"]
