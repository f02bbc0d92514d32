"""Security: hashed tokens, constant-time checks, revocation, no secrets in logs or responses,
closed CORS, a locked-down session cookie, and sort/filter parameters that build no SQL."""

from __future__ import annotations

import hmac
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, inspect, select, text
from sqlalchemy.orm import Session

from shared.db import tokens
from shared.db.models import ApiToken, Run, Sweep

from .conftest import API_TOKEN, finish_run, post_yaml

SWEEPS = Path(sys.executable).parent / "sweeps"


def _every_text_value(db_url: str) -> str:
    """All values of all tables, as one string (to look for a secret anywhere at rest)."""
    engine = create_engine(db_url)
    values: list[str] = []
    with engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                values.extend(str(v) for v in row)
    engine.dispose()
    return "\n".join(values)


def test_no_secret_is_stored_anywhere(
    client: TestClient, session: Session, api_env: dict[str, str]
) -> None:
    _, secret = tokens.create_token(session, "laptop")
    session.commit()
    assert client.get("/sweeps", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    assert post_yaml(client).status_code == 201
    everything = _every_text_value(api_env["SWEEPS_DATABASE_URL"])
    for live in (secret, API_TOKEN):
        assert live not in everything
        assert tokens.hash_token(live) in everything  # what is stored instead
    hashes = session.scalars(select(ApiToken.token_hash)).all()
    assert all(len(h) == 64 and set(h) <= set("0123456789abcdef") for h in hashes)


def test_token_check_is_constant_time(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(tokens.hmac, "compare_digest", spy)
    assert client.get("/sweeps").status_code == 200
    digest = tokens.hash_token(API_TOKEN)
    assert (digest, digest) in calls  # the stored hash against the presented one
    # and the lookup is by hash: a near-miss secret never reaches a byte-by-byte comparison
    calls.clear()
    near = API_TOKEN[:-1] + ("x" if API_TOKEN[-1] != "x" else "y")
    assert client.get("/sweeps", headers={"Authorization": f"Bearer {near}"}).status_code == 401
    assert all(API_TOKEN not in pair and near not in pair for pair in calls)


def test_token_revoked_with_the_cli_is_refused(
    anon: TestClient, session: Session, api_env: dict[str, str]
) -> None:
    _, secret = tokens.create_token(session, "ci-runner")
    session.commit()
    headers = {"Authorization": f"Bearer {secret}"}
    assert anon.get("/sweeps", headers=headers).status_code == 200
    env = {**os.environ, **api_env}
    result = subprocess.run(
        [str(SWEEPS), "token", "revoke", "ci-runner"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "revoked 1 token(s) named 'ci-runner'" in result.stdout
    assert secret not in result.stdout + result.stderr
    response = anon.get("/sweeps", headers=headers)
    assert response.status_code == 401
    assert response.json()["detail"] == "invalid or revoked token"
    # the UI refuses it too, and the bootstrap token still works
    login = anon.post("/ui/login", data={"token": secret}, follow_redirects=False)
    assert login.status_code == 401
    assert anon.get("/sweeps", headers={"Authorization": f"Bearer {API_TOKEN}"}).status_code == 200


def test_secrets_never_logged_or_returned(
    client: TestClient, anon: TestClient, session: Session, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _, secret = tokens.create_token(session, "temp")
    session.commit()
    wrong = "swp_" + "w" * 43
    texts = []
    for token in (API_TOKEN, secret, wrong):
        headers = {"Authorization": f"Bearer {token}"}
        texts += [
            anon.get("/sweeps", headers=headers).text,
            anon.get("/sweeps/12345", headers=headers).text,
            anon.post("/sweeps", content=b"broken: [", headers=headers).text,
            anon.get("/runs/1/metrics?keys=nope", headers=headers).text,
        ]
        texts.append(anon.post("/ui/login", data={"token": token}, follow_redirects=False).text)
    texts.append(post_yaml(client).text)
    texts.append(client.get("/openapi.json").text)
    logged = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    for token in (API_TOKEN, secret, wrong):
        assert token not in logged
        assert all(token not in body for body in texts)


def test_session_cookie_is_httponly_and_samesite(anon: TestClient) -> None:
    response = anon.post("/ui/login", data={"token": API_TOKEN}, follow_redirects=False)
    assert response.status_code == 303
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=lax" in cookie or "samesite=strict" in cookie
    assert API_TOKEN.lower() not in cookie
    assert tokens.hash_token(API_TOKEN) not in cookie  # the hash is the key, never the value


def test_cross_site_login_is_refused(anon: TestClient) -> None:
    response = anon.post(
        "/ui/login",
        data={"token": API_TOKEN},
        headers={"Origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert response.status_code == 403
    assert "set-cookie" not in response.headers


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/sweeps"),
        ("POST", "/sweeps"),
        ("POST", "/sweeps/preview"),
        ("GET", "/runs/1/metrics"),
        ("GET", "/compare"),
        ("GET", "/healthz"),
    ],
)
def test_cors_preflight_is_refused_by_default(client: TestClient, method: str, path: str) -> None:
    preflight = client.options(
        path,
        headers={
            "Origin": "https://evil.example",
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status_code >= 400
    assert not any(h.lower().startswith("access-control-") for h in preflight.headers)
    actual = client.request(method, path, headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in actual.headers
    assert "access-control-allow-credentials" not in actual.headers


INJECTIONS = [
    "name; DROP TABLE runs; --",
    "status' OR '1'='1",
    "1); DELETE FROM sweeps; --",
    "-id UNION SELECT token_hash FROM api_tokens",
    "(SELECT 1)",
    "__class__",
]


@pytest.mark.parametrize("sort", INJECTIONS)
def test_sort_must_name_a_known_column(client: TestClient, session: Session, sort: str) -> None:
    created = post_yaml(client).json()
    sweep_id = created["id"]
    finish_run(session, created["runs"][0]["id"], latest={"validation_loss": (64, 0.5)})
    for path, params in (
        (f"/sweeps/{sweep_id}/table", {"sort": sort}),
        ("/compare", {"sweeps": str(sweep_id), "sort": sort}),
        (f"/sweeps/{sweep_id}/table", {"sort": sort, "format": "csv"}),
    ):
        response = client.get(path, params=params)
        assert response.status_code == 422, (path, response.text)
        assert "cannot sort by" in response.json()["detail"]
        assert "choose one of" in response.json()["detail"]
    # a real column still sorts; nothing was dropped or deleted
    assert client.get(f"/sweeps/{sweep_id}/table", params={"sort": "-lr"}).status_code == 200
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(Run)) == 2
    assert session.scalar(select(func.count()).select_from(Sweep)) == 1
    assert session.scalar(select(func.count()).select_from(ApiToken)) == 1


@pytest.mark.parametrize("value", ["1;DROP TABLE runs", "1 OR 1=1", "-1", "0x10", "1,,2", "'1'"])
def test_id_lists_are_validated(client: TestClient, value: str) -> None:
    for key in ("runs", "sweeps"):
        response = client.get("/compare", params={key: value})
        assert response.status_code == 422
        assert "comma-separated ids" in response.json()["detail"]


def test_metric_keys_are_validated(client: TestClient, session: Session) -> None:
    run_id = post_yaml(client).json()["runs"][0]["id"]
    for keys in ("loss' OR '1'='1", "validation_loss; DROP TABLE metrics"):
        response = client.get(f"/runs/{run_id}/metrics", params={"keys": keys})
        assert response.status_code == 422
        assert "unknown metric key" in response.json()["detail"]
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(Run)) == 2


@pytest.mark.parametrize(
    "params", [{"limit": "0"}, {"limit": "501"}, {"offset": "-1"}, {"limit": "1; DROP"}]
)
def test_paging_parameters_are_bounded(client: TestClient, params: dict[str, str]) -> None:
    assert client.get("/sweeps", params=params).status_code == 422
