"""Every endpoint but /healthz needs a live bearer token; tokens are hashed and never echoed."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.db import tokens
from shared.db.models import ApiToken

from .conftest import API_TOKEN


def _protected_routes(client: TestClient) -> list[tuple[str, str]]:
    schema = client.get("/openapi.json").json()
    routes = []
    for path, methods in schema["paths"].items():
        for method in methods:
            concrete = path.replace("{sweep_id}", "1").replace("{run_id}", "1")
            routes.append((method.upper(), concrete))
    return [r for r in routes if r[1] != "/healthz"]


def test_every_endpoint_but_healthz_refuses_a_missing_token(anon: TestClient) -> None:
    routes = _protected_routes(anon)
    assert len(routes) >= 11
    for method, path in routes:
        response = anon.request(method, path)
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert "Authorization: Bearer" in response.json()["detail"]
    assert anon.get("/healthz").status_code == 200


@pytest.mark.parametrize("header", ["Bearer wrong", "Bearer ", f"Basic {API_TOKEN}", API_TOKEN])
def test_wrong_token_is_refused(anon: TestClient, header: str) -> None:
    response = anon.get("/sweeps", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_right_token_is_accepted(client: TestClient) -> None:
    assert client.get("/sweeps").status_code == 200


def test_created_token_works_until_revoked(anon: TestClient, session: Session) -> None:
    _token, secret = tokens.create_token(session, "ci")
    session.commit()
    headers = {"Authorization": f"Bearer {secret}"}
    assert anon.get("/sweeps", headers=headers).status_code == 200
    tokens.revoke_token(session, "ci")
    session.commit()
    response = anon.get("/sweeps", headers=headers)
    assert response.status_code == 401
    assert response.json()["detail"] == "invalid or revoked token"
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_bootstrap_token_is_stored_hashed_and_never_logged(
    client: TestClient, session: Session, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    response = client.get("/sweeps")
    assert response.status_code == 200
    stored = session.scalars(select(ApiToken)).all()
    assert [t.name for t in stored] == ["bootstrap"]
    assert stored[0].token_hash == tokens.hash_token(API_TOKEN)
    assert API_TOKEN not in stored[0].token_hash
    assert API_TOKEN not in caplog.text
    assert API_TOKEN not in response.text


def test_cors_is_closed_by_default(client: TestClient) -> None:
    response = client.options(
        "/sweeps",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in response.headers
    response = client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in response.headers


def test_cors_opens_only_to_listed_origins(
    api_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from api.main import create_app
    from shared.settings import get_settings

    monkeypatch.setenv("SWEEPS_CORS_ORIGINS", '["https://ui.example"]')
    get_settings.cache_clear()
    with TestClient(create_app()) as anon:
        ok = anon.get("/healthz", headers={"Origin": "https://ui.example"})
        other = anon.get("/healthz", headers={"Origin": "https://evil.example"})
    assert ok.headers["access-control-allow-origin"] == "https://ui.example"
    assert "access-control-allow-origin" not in other.headers
