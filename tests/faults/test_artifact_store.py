"""Checkpoints in an object store (moto's S3 server on loopback) and on a local disk: whole or
absent when the store or the disk fails mid-write, and a wrong location refused at start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import moto.settings
import pytest
import torch
from botocore.exceptions import EndpointConnectionError

from shared.artifacts import ObjectFolder, _s3_in, check_location, open_folder
from tests.cli.conftest import SWEEPS, cli_env
from tests.faults.s3 import BUCKET, CuttingRelay, S3Server
from tests.support.stack import free_port
from worker.engine import checkpoint as ckpt

pytestmark = pytest.mark.timeout(120)


def state(value: float, size: int = 1000) -> dict[str, torch.Tensor]:
    return {"weights": torch.full((size,), value)}


def test_checkpoints_round_trip_through_the_store(s3: S3Server) -> None:
    location = s3.url("runs/7")
    assert ckpt.load_checkpoint(location) is None
    ckpt.save_checkpoint(location, state(1.0))
    ckpt.save_checkpoint(location, state(2.0))  # overwritten in place: nothing to prune
    ckpt.save_pending_svc(location, 640, {"x": torch.ones(2)})
    ckpt.save_pending_svc(location, 1280, {"x": torch.zeros(2)})
    ckpt.save_pending_svc(location, 1920, {"x": torch.zeros(3)})

    loaded = ckpt.load_checkpoint(location)
    assert loaded is not None and torch.equal(loaded["weights"], torch.full((1000,), 2.0))
    # Pending SVC inputs up to the checkpoint come back in step order; later ones are dropped.
    pending = ckpt.load_pending_svc(location, 1280)
    assert list(pending) == [640, 1280]
    ckpt.drop_pending_svc(location, 640)
    assert open_folder(location).names() == ["latest.pt", "svc-1280.pt"]


def test_store_failing_mid_upload_leaves_the_previous_checkpoint(
    s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    location = s3.url("runs/8")
    ckpt.save_checkpoint(location, state(1.0))

    # The next upload goes through a relay that cuts every connection 100 kB in: a ~4 MB
    # checkpoint never reaches the store whole, however often s3fs retries.
    relay = CuttingRelay(target_port=int(s3.endpoint.rsplit(":", 1)[1]), cut_after=100_000)
    relay.start()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", relay.endpoint)
        _s3_in.cache_clear()
        with pytest.raises(EndpointConnectionError):
            ckpt.save_checkpoint(ObjectFolder(location), state(2.0, size=1_000_000))
        assert relay.cuts >= 1
    finally:
        relay.stop()

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    _s3_in.cache_clear()
    loaded = ckpt.load_checkpoint(location)
    assert loaded is not None and torch.equal(loaded["weights"], torch.full((1000,), 1.0))
    assert open_folder(location).names() == ["latest.pt"]


FULL_DISK = """
import resource, signal, sys, torch
from worker.engine import checkpoint as ckpt
# The file-size limit stands in for a full disk: the write fails with EFBIG part-way.
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
try:
    ckpt.save_checkpoint(sys.argv[1], {"weights": torch.full((1_000_000,), 2.0)})
except Exception as exc:  # torch wraps the OSError in its zip writer's own error
    print("failed:", type(exc).__name__, exc, "| cause:", exc.__context__)
"""


def test_full_disk_mid_write_leaves_the_previous_checkpoint(tmp_path: Path) -> None:
    folder = tmp_path / "runs" / "9"
    ckpt.save_checkpoint(folder, state(1.0))
    result = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(folder)], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.startswith("failed:"), result.stderr
    assert "File too large" in result.stdout
    loaded = ckpt.load_checkpoint(folder)
    assert loaded is not None and torch.equal(loaded["weights"], torch.full((1000,), 1.0))
    assert sorted(p.name for p in folder.iterdir()) == ["latest.pt"]  # no temporary left


def worker_start(tmp_path: Path, artifact_url: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`sweeps worker` with an unreachable broker: only the artifact check can stop it early."""
    return subprocess.run(
        [str(SWEEPS), "worker"],
        cwd=tmp_path,
        env=cli_env(
            SWEEPS_ARTIFACT_URL=artifact_url,
            SWEEPS_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0",
            **env,
        ),
        capture_output=True,
        text=True,
        timeout=90,
    )


def assert_one_line(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.slow
def test_wrong_artifact_url_stops_the_worker_at_start(s3: S3Server, tmp_path: Path) -> None:
    assert_one_line(
        worker_start(tmp_path, "ftp://host/ckpts"), "unknown scheme 'ftp://'", "s3://bucket"
    )
    assert_one_line(
        worker_start(tmp_path, "s3://no-such-bucket/ckpts", **s3.env()),
        "cannot write checkpoints to s3://no-such-bucket/ckpts",
        "bucket does not exist",
    )
    unreachable = f"http://127.0.0.1:{free_port()}"
    assert_one_line(
        worker_start(tmp_path, s3.url("ckpts"), **s3.env(unreachable)),
        f"cannot write checkpoints to s3://{BUCKET}/ckpts",
        "Could not connect",
    )
    file_in_the_way = tmp_path / "a-file"
    file_in_the_way.write_text("")
    assert_one_line(
        worker_start(tmp_path, str(file_in_the_way / "ckpts")),
        f"cannot write checkpoints to {file_in_the_way / 'ckpts'}",
        "NotADirectoryError",
    )


def test_refused_keys_are_one_line(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    # moto checks keys only when told to; it then knows none, as a store with revoked keys.
    monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
    with pytest.raises(Exception, match="cannot write checkpoints to .*PermissionError") as info:
        check_location(s3.url("ckpts"))
    assert "\n" not in str(info.value)
