"""The app's shape: no torch/worker imports, no connection at creation, healthz, OpenAPI docs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient

from tests.conftest import REPO, free_port


def test_app_imports_neither_torch_nor_worker_and_does_not_connect() -> None:
    # A fresh interpreter, so modules other tests imported do not count. The database URL
    # points at a closed port: create_app() must not try it. Optuna is imported when a
    # search's trials are first asked, not at the start.
    code = (
        "import sys, json\n"
        "from api.main import create_app\n"
        "app = create_app()\n"
        "print(json.dumps(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('torch', 'worker', 'torchvision', 'sklearn', 'optuna'))))\n"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "SWEEPS_DATABASE_URL": f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none",
    }
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_healthz_reports_each_dependency(client: TestClient) -> None:
    response = client.get("/healthz", headers={"Authorization": ""})
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": {"ok": True, "error": None},
        "broker": {"ok": True, "error": None},
    }


def test_healthz_with_broker_down_is_503(
    api_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from api.main import create_app
    from shared.settings import get_settings

    monkeypatch.setenv("SWEEPS_BROKER_URL", f"redis://127.0.0.1:{free_port()}/0")
    get_settings.cache_clear()
    with TestClient(create_app()) as anon:
        response = anon.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["database"]["ok"] is True
    assert body["broker"]["ok"] is False and "broker unreachable" in body["broker"]["error"]


def test_submit_with_broker_down_keeps_runs_queued_for_the_reconciler(
    api_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from api.main import create_app
    from shared.settings import get_settings

    from .conftest import API_TOKEN, post_yaml

    monkeypatch.setenv("SWEEPS_BROKER_URL", f"redis://127.0.0.1:{free_port()}/0")
    get_settings.cache_clear()
    with TestClient(create_app(), headers={"Authorization": f"Bearer {API_TOKEN}"}) as client:
        response = post_yaml(client)
        assert response.status_code == 201
        assert response.json()["enqueued"] == 0
        assert "reconciler" in response.json()["warnings"][0]
        run = client.get(f"/runs/{response.json()['runs'][0]['id']}").json()
    assert run["status"] == "queued" and run["enqueued_at"] is None


def test_openapi_documents_every_endpoint(anon: TestClient) -> None:
    schema = anon.get("/openapi.json").json()
    expected = {
        ("post", "/sweeps"), ("post", "/sweeps/preview"), ("get", "/sweeps"),
        ("get", "/sweeps/{sweep_id}"), ("post", "/sweeps/{sweep_id}/cancel"),
        ("post", "/sweeps/{sweep_id}/retry"), ("get", "/runs/{run_id}"),
        ("post", "/runs/{run_id}/cancel"), ("get", "/runs/{run_id}/metrics"),
        ("get", "/sweeps/{sweep_id}/table"), ("get", "/compare"), ("get", "/healthz"),
    }  # fmt: skip
    found = {(m, p) for p, methods in schema["paths"].items() for m in methods}
    assert expected <= found
    for method, path in expected:
        operation = schema["paths"][path][method]
        assert operation.get("description"), (method, path)
        ok = operation["responses"].get("200") or operation["responses"].get("201")
        assert "application/json" in ok["content"], (method, path)
        if path != "/healthz":
            assert operation.get("security"), (method, path)
    body = schema["paths"]["/sweeps"]["post"]["requestBody"]["content"]
    assert {"application/x-yaml", "text/plain", "application/json"} <= set(body)
    assert anon.get("/docs").status_code == 200
