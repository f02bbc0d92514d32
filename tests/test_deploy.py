"""Deployment files: compose services, healthchecks, start order, GPU reservation, images."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.settings import Settings

REPO = Path(__file__).resolve().parent.parent
ENGINE_ONLY = {"torch", "torchvision", "scikit-learn", "numpy"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per Dockerfile instruction, continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def test_compose_has_the_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    default = {name for name, service in services.items() if not service.get("profiles")}
    assert default == {"postgres", "redis", "migrate", "api", "worker"}
    # The S3-compatible store for checkpoints shared across hosts is opt-in.
    assert {n for n in services if n not in default} == {"minio", "minio-bucket"}
    assert all(services[n]["profiles"] == ["s3"] for n in ("minio", "minio-bucket"))
    assert services["postgres"]["image"] == "postgres:16"
    assert services["redis"]["image"] == "redis:7"
    assert services["api"]["build"]["dockerfile"] == "Dockerfile"
    assert services["migrate"]["build"]["dockerfile"] == "Dockerfile"
    assert services["worker"]["build"]["dockerfile"] == "Dockerfile.gpu"
    assert services["migrate"]["command"] == ["sweeps", "migrate"]
    assert services["migrate"]["restart"] == "no"
    assert services["worker"]["command"][:2] == ["sweeps", "worker"]


def test_healthchecks_and_start_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("postgres", "redis", "api"):
        check = services[name]["healthcheck"]
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert check["interval"] and check["retries"] >= 3, name
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"][1]
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert "/healthz" in " ".join(services["api"]["healthcheck"]["test"])

    def conditions(name: str) -> dict[str, str]:
        return {dep: spec["condition"] for dep, spec in services[name]["depends_on"].items()}

    assert conditions("migrate") == {"postgres": "service_healthy"}
    expected = {
        "postgres": "service_healthy",
        "redis": "service_healthy",
        "migrate": "service_completed_successfully",
    }
    assert conditions("api") == expected
    assert conditions("worker") == expected


def test_worker_reserves_a_gpu_and_keeps_checkpoints(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia"
    assert "gpu" in device["capabilities"]
    assert device.get("count") == 1 or device.get("device_ids")
    mounts = dict(volume.split(":", 1) for volume in worker["volumes"])
    env = worker["environment"]
    assert mounts["artifacts"] == env["SWEEPS_ARTIFACT_DIR"]
    assert mounts["datasets"] == env["SWEEPS_DATA_DIR"]
    assert set(compose["volumes"]) >= {"postgres-data", "redis-data", "artifacts", "datasets"}
    assert compose["services"]["postgres"]["volumes"] == ["postgres-data:/var/lib/postgresql/data"]


def test_services_get_only_known_settings(compose: dict[str, Any]) -> None:
    known = {f"SWEEPS_{name.upper()}" for name in Settings.model_fields}
    for name, service in compose["services"].items():
        env = service.get("environment") or {}
        unknown = {key for key in env if key.startswith("SWEEPS_")} - known
        assert not unknown, f"{name}: {unknown}"
    api_env = compose["services"]["api"]["environment"]
    assert api_env["SWEEPS_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert api_env["SWEEPS_BROKER_URL"] == "redis://redis:6379/0"
    example = (REPO / ".env.example").read_text()
    example_keys = set(re.findall(r"^(SWEEPS_[A-Z_]+)=", example, flags=re.M))
    # the host port and the API's process count are compose's, not our settings
    assert example_keys - known <= {"SWEEPS_API_PORT", "SWEEPS_API_WORKERS"}
    assert {"POSTGRES_PASSWORD", "SWEEPS_API_TOKEN"} <= set(re.findall(r"^(\w+)=", example, re.M))


def test_api_runs_two_processes_by_default(compose: dict[str, Any]) -> None:
    command = compose["services"]["api"]["command"]
    assert command[:2] == ["sweeps", "api"]
    assert command[command.index("--workers") + 1] == "${SWEEPS_API_WORKERS:-2}"


def test_api_image_has_no_torch() -> None:
    steps = _instructions(REPO / "Dockerfile")
    assert steps[0] == ("FROM", "python:3.11-slim")
    run = " ".join(args for op, args in steps if op == "RUN")
    assert all(repr(name) in run for name in ENGINE_ONLY)  # filtered out of the requirements
    copied = {args.split()[0] for op, args in steps if op == "COPY"}
    assert "worker" not in copied
    assert ("USER", "sweeps") in steps
    assert any(op == "HEALTHCHECK" and "/healthz" in args for op, args in steps)


def test_worker_image_installs_cuda_torch() -> None:
    steps = _instructions(REPO / "Dockerfile.gpu")
    run = " ".join(args for op, args in steps if op == "RUN")
    args = dict(a.split("=", 1) for op, a in steps if op == "ARG" and "=" in a)
    assert "download.pytorch.org/whl/cu" in args["TORCH_INDEX_URL"]
    assert '--index-url "${TORCH_INDEX_URL}"' in run
    assert {"worker", "shared"} <= {a.split()[0] for op, a in steps if op == "COPY"}
    assert steps[-1][0] == "CMD" and '"worker"' in steps[-1][1]
    env = " ".join(a for op, a in steps if op == "ENV")
    assert "NVIDIA_DRIVER_CAPABILITIES=compute,utility" in env


def test_dockerignore_keeps_secrets_and_venv_out() -> None:
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".env", ".venv", ".git"} <= set(ignored)


def test_docker_compose_validates_the_file() -> None:
    binary = shutil.which("docker-compose") or "/usr/bin/docker-compose"
    if not Path(binary).exists():
        pytest.fail("docker-compose is missing: apt-get install docker-compose (.ci/run does)")
    result = subprocess.run(
        [binary, "--env-file", ".env.example", "-f", "docker-compose.yml", "config", "-q"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
