"""Where checkpoints live: a local folder, or an S3-compatible object store so that a run can
resume on another host (SWEEPS_ARTIFACT_URL=s3://bucket/prefix; unset: SWEEPS_ARTIFACT_DIR).

Object stores go through fsspec with s3fs rather than boto3: fsspec is already installed with
torch (one pinned version for both), s3fs speaks to AWS S3, MinIO, Ceph and R2 alike, pages
listings, retries transient errors and maps S3 errors onto Python's own (a missing bucket is
FileNotFoundError, a refused key PermissionError), which boto3 would leave to us. Endpoint
and keys come from the standard AWS variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_REGION), read by botocore, so every S3 tool on the host agrees.

A file is whole or absent, never torn:
- local: written to a temporary file in the same folder, fsynced, renamed over the old one
  (rename is atomic on POSIX), so a full disk leaves the previous file in place;
- object store: serialised in memory (the checkpoint's size in RAM, briefly), then sent in
  one PUT (or one multipart upload for large files); S3 replaces an object only when a PUT or
  an upload's completion succeeds, so a store failing mid-write leaves the previous object.
  S3 has no rename, and a temporary key copied over would double the traffic for no gain.
Names are overwritten in place (`latest.pt`), so nothing older piles up to prune.

Nothing here imports torch: the worker's parent process runs the start-up check, and the API
streams a run's model file (`GET /runs/{id}/checkpoint`) through the same folders.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import uuid
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import urlsplit

OBJECT_SCHEMES = ("s3",)
# A finished run's trained model: {"state_dict", "config", "run_id", "format"} (engine writes it).
MODEL_FILE = "model.pt"
LOCAL_SCHEMES = ("", "file")

Writer = Callable[[IO[bytes]], Any]


class ArtifactStoreError(Exception):
    """The configured artifact location cannot be used; the message is one line."""


class Folder(Protocol):
    def write(self, name: str, writer: Writer) -> None: ...
    def read(self, name: str) -> IO[bytes] | None: ...
    def stream(self, name: str) -> IO[bytes] | None: ...
    def delete(self, name: str) -> None: ...
    def names(self) -> list[str]: ...


def scheme_of(location: str | Path) -> str:
    scheme = urlsplit(str(location)).scheme if isinstance(location, str) else ""
    # A one-letter "scheme" is a Windows drive letter (C:\runs): a local path.
    if len(scheme) == 1:
        scheme = ""
    if scheme not in LOCAL_SCHEMES + OBJECT_SCHEMES:
        raise ArtifactStoreError(
            f"unknown scheme {scheme + '://'!r} in the artifact location {location}; "
            "use s3://bucket/prefix or a local path"
        )
    return scheme


def join_location(location: str | Path, *parts: str) -> Path | str:
    """`location`/parts: a Path for a local location, a URL string for an object store."""
    scheme = scheme_of(location)
    if scheme in OBJECT_SCHEMES:
        return "/".join([str(location).rstrip("/"), *parts])
    return Path(_local_path(location), *parts)


def run_location(location: str | Path, run_id: int) -> Path | str:
    """The folder of one run's files (checkpoints, model) under the artifact location."""
    return join_location(location, "runs", str(run_id))


def open_folder(location: str | Path) -> Folder:
    scheme = scheme_of(location)
    if scheme in OBJECT_SCHEMES:
        return ObjectFolder(str(location))
    return LocalFolder(_local_path(location))


def _local_path(location: str | Path) -> Path:
    text = str(location)
    return Path(text[len("file://") :] if text.startswith("file://") else text)


class LocalFolder:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __str__(self) -> str:
        return str(self.path)

    def write(self, name: str, writer: Writer) -> None:
        target = self.path / name
        self.path.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                writer(fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def read(self, name: str) -> IO[bytes] | None:
        try:
            return open(self.path / name, "rb")  # noqa: SIM115 -- the caller closes it
        except FileNotFoundError:
            return None

    def stream(self, name: str) -> IO[bytes] | None:
        return self.read(name)

    def delete(self, name: str) -> None:
        (self.path / name).unlink(missing_ok=True)

    def names(self) -> list[str]:
        if not self.path.is_dir():
            return []
        return sorted(p.name for p in self.path.iterdir() if p.is_file())


def _s3(probe: bool = False) -> Any:
    return _s3_in(os.getpid(), probe)


@lru_cache
def _s3_in(pid: int, probe: bool) -> Any:
    """One S3 filesystem per process (a forked child must not share its parent's event loop
    and connections); the probe's fails fast, the checkpoints' retry through hiccups."""
    import s3fs

    # Listings are read by other hosts' workers too: never answer from a stale cache.
    options: dict[str, Any] = {"use_listings_cache": False, "skip_instance_cache": True}
    if not probe:
        return s3fs.S3FileSystem(**options)
    timeouts = {"connect_timeout": 5, "read_timeout": 15, "retries": {"max_attempts": 2}}
    fs = s3fs.S3FileSystem(**options, config_kwargs=timeouts)
    fs.retries = 1
    return fs


class ObjectFolder:
    def __init__(self, url: str, *, probe: bool = False) -> None:
        self.url = url.rstrip("/")
        self.root = self.url.split("://", 1)[1]
        self.fs = _s3(probe)

    def __str__(self) -> str:
        return self.url

    def write(self, name: str, writer: Writer) -> None:
        buffer = io.BytesIO()
        writer(buffer)
        self.fs.pipe_file(f"{self.root}/{name}", buffer.getvalue())

    def read(self, name: str) -> IO[bytes] | None:
        try:
            return io.BytesIO(self.fs.cat_file(f"{self.root}/{name}"))
        except FileNotFoundError:
            return None

    def stream(self, name: str) -> IO[bytes] | None:
        """The object read in blocks as the caller goes (a download of a large model)."""
        try:
            return self.fs.open(f"{self.root}/{name}", "rb")  # type: ignore[no-any-return]
        except FileNotFoundError:
            return None

    def delete(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(f"{self.root}/{name}")

    def names(self) -> list[str]:
        try:
            entries = self.fs.ls(self.root, detail=True)
        except FileNotFoundError:
            return []
        return sorted(e["name"].rsplit("/", 1)[-1] for e in entries if e["type"] == "file")


def check_location(location: str | Path) -> None:
    """Write and delete a small probe where checkpoints go, so that a wrong location stops a
    worker at start (one line) rather than a run at its first checkpoint hours later."""
    scheme = scheme_of(location)
    if scheme in OBJECT_SCHEMES and not urlsplit(str(location)).netloc:
        raise ArtifactStoreError(f"the artifact location {location} names no bucket")
    folder: Folder = (
        ObjectFolder(str(location), probe=True)
        if scheme in OBJECT_SCHEMES
        else LocalFolder(_local_path(location))
    )
    name = f".sweeps-probe-{uuid.uuid4().hex}"
    try:
        folder.write(name, lambda fh: fh.write(b"probe"))
        folder.delete(name)
    except Exception as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise ArtifactStoreError(
            f"cannot write checkpoints to {location}: {type(exc).__name__}: {detail}"
        ) from None
