"""A real S3-compatible server on loopback for the fault tests (moto's server mode), and a TCP
relay in front of it that can cut a connection mid-upload, as a failing store or network does.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass, field

BUCKET = "sweeps-ckpts"
KEYS = {"AWS_ACCESS_KEY_ID": "faults", "AWS_SECRET_ACCESS_KEY": "faults-secret"}


@dataclass
class S3Server:
    """moto's ThreadedMotoServer on 127.0.0.1 with one bucket; `env` points botocore at it."""

    server: object = None
    endpoint: str = ""

    def start(self) -> None:
        import boto3
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()  # type: ignore[attr-defined]
        host, port = self.server.get_host_and_port()  # type: ignore[attr-defined]
        self.endpoint = f"http://{host}:{port}"
        # A plain CreateBucket: s3fs's mkdir sends a location constraint that moto refuses.
        client = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1", **{
            "aws_access_key_id": KEYS["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": KEYS["AWS_SECRET_ACCESS_KEY"],
        })  # fmt: skip
        client.create_bucket(Bucket=BUCKET)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()  # type: ignore[attr-defined]
            self.server = None

    def env(self, endpoint: str | None = None) -> dict[str, str]:
        return {
            **KEYS,
            "AWS_ENDPOINT_URL": endpoint or self.endpoint,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
        }

    def url(self, prefix: str) -> str:
        return f"s3://{BUCKET}/{prefix}"


@dataclass
class CuttingRelay:
    """Relays loopback TCP to `target_port`; while `cut_after` is set, a connection whose
    requests pass that many bytes is closed on both sides (an upload dies half sent)."""

    target_port: int
    cut_after: int | None = None
    cuts: int = 0
    listener: socket.socket = field(default_factory=socket.socket)
    _stopped: bool = False

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def start(self) -> None:
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self) -> None:
        self._stopped = True
        with contextlib.suppress(OSError):
            self.listener.close()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, request: bool) -> None:
        sent = 0
        try:
            while data := src.recv(65536):
                if request and self.cut_after is not None and sent + len(data) > self.cut_after:
                    dst.sendall(data[: max(0, self.cut_after - sent)])
                    self.cuts += 1
                    break
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
