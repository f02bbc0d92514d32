"""Token roles and sweep owners, over the JSON API and the UI's forms.

read: GET only. write: submit, and cancel/retry its own sweeps. admin (the bootstrap token):
any sweep. The rules live in shared/domain/access.py; these tests go through the real app.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.db import tokens
from shared.db.models import ApiToken, Run, RunStatus, Sweep, TokenRole

from .conftest import API_TOKEN, TINY_YAML, finish_run

SAME_ORIGIN = {"Origin": "http://testserver"}
YAML = {"Content-Type": "application/x-yaml"}

Bearer = Callable[[TokenRole], dict[str, str]]


@pytest.fixture
def bearer(session: Session) -> Bearer:
    """A new token of the given role, as an Authorization header."""
    made = 0

    def make(role: TokenRole) -> dict[str, str]:
        nonlocal made
        made += 1
        _, secret = tokens.create_token(session, f"{role.value}-{made}", role=role)
        session.commit()
        return {"Authorization": f"Bearer {secret}"}

    return make


def _submit(client: TestClient, headers: dict[str, str]) -> dict:
    response = client.post("/sweeps", content=TINY_YAML, headers={**YAML, **headers})
    assert response.status_code == 201, response.text
    return response.json()


def test_bootstrap_token_is_admin_and_new_tokens_are_write(
    client: TestClient, session: Session
) -> None:
    assert client.get("/sweeps").status_code == 200  # stores the bootstrap token
    (bootstrap,) = session.scalars(select(ApiToken).where(ApiToken.name == "bootstrap"))
    assert bootstrap.role is TokenRole.ADMIN
    token, _ = tokens.create_token(session, "laptop")
    assert token.role is TokenRole.WRITE


def test_read_token_reads_and_previews_but_gets_403_on_every_change(
    client: TestClient, anon: TestClient, bearer: Bearer
) -> None:
    sweep = _submit(client, {})
    run_id = sweep["runs"][0]["id"]
    reader = bearer(TokenRole.READ)
    for path in ("/sweeps", f"/sweeps/{sweep['id']}", f"/runs/{run_id}", "/compare?runs=1"):
        assert anon.get(path, headers=reader).status_code == 200, path
    # A preview judges the file and stores nothing: a CI job with a read token may check files.
    preview = anon.post("/sweeps/preview", content=TINY_YAML, headers={**YAML, **reader})
    assert preview.status_code == 200, preview.text
    assert len(preview.json()["runs"]) == 2
    posts = ["/sweeps", f"/sweeps/{sweep['id']}/cancel",
             f"/sweeps/{sweep['id']}/retry", f"/runs/{run_id}/cancel"]  # fmt: skip
    for path in posts:
        response = anon.post(path, content=TINY_YAML, headers={**YAML, **reader})
        assert response.status_code == 403, (path, response.text)
        assert "role read" in response.json()["detail"], path
    assert client.get(f"/runs/{run_id}").json()["status"] == "queued"


def test_only_the_owner_and_admins_cancel_and_retry(
    client: TestClient, anon: TestClient, session: Session, bearer: Bearer
) -> None:
    owner, other = bearer(TokenRole.WRITE), bearer(TokenRole.WRITE)
    sweep = _submit(anon, owner)
    sweep_id, run_id = sweep["id"], sweep["runs"][0]["id"]
    session.expire_all()
    owner_id = session.get(Sweep, sweep_id).owner_token_id
    assert session.get(ApiToken, owner_id).name.startswith("write-")

    for path in (
        f"/sweeps/{sweep_id}/cancel",
        f"/sweeps/{sweep_id}/retry",
        f"/runs/{run_id}/cancel",
    ):
        response = anon.post(path, headers=other)
        assert response.status_code == 403, path
        detail = response.json()["detail"]
        assert f"sweep {sweep_id} was submitted by another token" in detail, detail
        assert "only the token that submitted it, or an admin token" in detail
    assert client.get(f"/runs/{run_id}").json()["status"] == "queued"

    assert anon.post(f"/runs/{run_id}/cancel", headers=owner).json()["status"] == "cancelled"
    assert anon.post(f"/sweeps/{sweep_id}/retry", headers=owner).json()["retried"] == [run_id]
    assert client.post(f"/sweeps/{sweep_id}/cancel").status_code == 200  # admin
    assert client.post(f"/sweeps/{sweep_id}/retry").status_code == 200  # admin


def test_write_token_cannot_touch_an_admins_sweep(
    client: TestClient, anon: TestClient, session: Session, bearer: Bearer
) -> None:
    sweep = _submit(client, {})
    finish_run(session, sweep["runs"][0]["id"], status=RunStatus.FAILED)
    writer = bearer(TokenRole.WRITE)
    response = anon.post(f"/sweeps/{sweep['id']}/retry", headers=writer)
    assert response.status_code == 403
    assert anon.post("/sweeps/999/cancel", headers=writer).status_code == 404
    session.expire_all()
    assert session.get(Run, sweep["runs"][0]["id"]).status is RunStatus.FAILED


def _ui_login(app_client: TestClient, secret: str) -> None:
    response = app_client.post(
        "/ui/login", data={"token": secret}, headers=SAME_ORIGIN, follow_redirects=False
    )
    assert response.status_code == 303, response.text


def test_ui_forms_obey_the_same_roles(
    client: TestClient, anon: TestClient, session: Session
) -> None:
    sweep = _submit(client, {})
    sweep_id, run_id = sweep["id"], sweep["runs"][0]["id"]
    _, read_secret = tokens.create_token(session, "dashboard", role=TokenRole.READ)
    _, write_secret = tokens.create_token(session, "colleague", role=TokenRole.WRITE)
    session.commit()

    _ui_login(anon, read_secret)
    # Pages offer only what the token may do: no cancel, retry or submit, but preview.
    page = anon.get(f"/ui/sweeps/{sweep_id}")
    assert page.status_code == 200
    assert 'id="read-only"' in page.text and f"/ui/sweeps/{sweep_id}/cancel" not in page.text
    assert f"/ui/runs/{run_id}/cancel" not in anon.get(f"/ui/runs/{run_id}").text
    form = anon.get("/ui/submit").text
    assert 'value="preview"' in form and 'value="submit"' not in form
    previewed = anon.post("/ui/submit", data={"yaml": TINY_YAML, "action": "preview"},
                          headers=SAME_ORIGIN)  # fmt: skip
    assert previewed.status_code == 200 and "lr:0.01" in previewed.text
    for path in (f"/ui/sweeps/{sweep_id}/cancel", f"/ui/runs/{run_id}/cancel"):
        response = anon.post(path, headers=SAME_ORIGIN, follow_redirects=False)
        assert response.status_code == 403 and "role read" in response.text, path
    submitted = anon.post("/ui/submit", data={"yaml": TINY_YAML, "action": "submit"},
                          headers=SAME_ORIGIN, follow_redirects=False)  # fmt: skip
    assert submitted.status_code == 403

    _ui_login(anon, write_secret)
    assert 'id="read-only"' in anon.get(f"/ui/sweeps/{sweep_id}").text  # not its sweep
    assert 'value="submit"' in anon.get("/ui/submit").text
    response = anon.post(f"/ui/sweeps/{sweep_id}/cancel", headers=SAME_ORIGIN)
    assert response.status_code == 403 and "submitted by another token" in response.text
    _ui_login(anon, API_TOKEN)  # the admin
    page = anon.get(f"/ui/sweeps/{sweep_id}").text
    assert f"/ui/sweeps/{sweep_id}/cancel" in page and 'id="read-only"' not in page
    response = anon.post(
        f"/ui/sweeps/{sweep_id}/cancel", headers=SAME_ORIGIN, follow_redirects=False
    )
    assert response.status_code == 303
    assert client.get(f"/runs/{run_id}").json()["status"] == "cancelled"
