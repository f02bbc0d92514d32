"""HTTP client for the sweeps API: finds the URL and token, turns failures into one-line errors."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from shared.settings import STATE_DIR, get_settings

TOKEN_FILE = STATE_DIR / "token"
STACK_FILE = STATE_DIR / "stack.json"
CACHE_DIR = STATE_DIR / "cache"


class CliError(Exception):
    """A failure a person can act on: printed as one line on stderr, exit code non-zero."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def read_token_file(path: Path = TOKEN_FILE) -> str | None:
    try:
        token = path.read_text().strip()
    except OSError:
        return None
    return token or None


def read_stack_file(path: Path = STACK_FILE) -> dict[str, Any] | None:
    """The record `sweeps up` / `sweeps run --keep` leaves for a running embedded stack."""
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class Target:
    url: str
    token: str | None
    token_source: str


def resolve_target() -> Target:
    """SWEEPS_URL / SWEEPS_API_TOKEN win; else the embedded stack recorded under .sweeps/."""
    settings = get_settings()
    stack = read_stack_file()
    url = settings.url
    # A stack started here on another port (`sweeps run --keep` picks a free one) is the
    # natural target unless SWEEPS_URL says otherwise.
    if "url" not in settings.model_fields_set and stack and stack.get("url"):
        url = str(stack["url"])
    if settings.api_token:
        return Target(url.rstrip("/"), settings.api_token, "SWEEPS_API_TOKEN")
    token = read_token_file()
    return Target(url.rstrip("/"), token, str(TOKEN_FILE) if token else "")


class ResponseCache:
    """GET answers that carry an ETag, kept on disk: the same GET again sends If-None-Match
    and a `304 Not Modified` costs no body (a finished run's series never change).

    Best effort: a cache that cannot be read or written is simply not used.
    """

    def __init__(self, folder: Path = CACHE_DIR) -> None:
        self.folder = folder

    def _path(self, url: str) -> Path:
        return self.folder / f"{hashlib.sha256(url.encode()).hexdigest()[:40]}.http"

    def load(self, url: str) -> tuple[str, bytes] | None:
        try:
            etag, _, body = self._path(url).read_bytes().partition(b"\n")
        except OSError:
            return None
        return etag.decode("ascii", "replace"), body

    def store(self, url: str, etag: str, body: bytes) -> None:
        path = self._path(url)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            partial.write_bytes(etag.encode("ascii", "replace") + b"\n" + body)
            partial.replace(path)  # atomic: a reader sees the old entry or the new one
        except OSError:
            partial.unlink(missing_ok=True)


RUNS_PAGE = 1000  # runs per request when a command pages through a sweep's runs


class ApiClient:
    """Thin wrapper over httpx: every non-2xx answer becomes a CliError with the API's reason."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        token_source: str = "",
        timeout: float = 30.0,
        cache: ResponseCache | None = None,
    ):
        self.url = url.rstrip("/")
        self.token = token
        self.token_source = token_source
        self.cache = cache or ResponseCache()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    @classmethod
    def from_settings(cls) -> ApiClient:
        target = resolve_target()
        return cls(target.url, target.token, token_source=target.token_source)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError:
            raise CliError(
                f"cannot reach the sweeps API at {self.url} (connection refused or no such host);"
                " start it with `sweeps up` or point SWEEPS_URL at a running server"
            ) from None
        except httpx.TimeoutException:
            raise CliError(f"the sweeps API at {self.url} did not answer in time") from None
        except httpx.HTTPError as exc:
            raise CliError(f"request to {self.url}{path} failed: {exc}") from None
        if response.status_code >= 400:
            raise CliError(self._failure_line(response))
        return response

    def get(self, path: str, **params: Any) -> Any:
        clean = {k: v for k, v in params.items() if v is not None}
        url = str(self._http.build_request("GET", path, params=clean).url)
        cached = self.cache.load(url)
        headers = {"If-None-Match": cached[0]} if cached else {}
        response = self.request("GET", path, params=clean, headers=headers)
        if response.status_code == 304 and cached:
            return json.loads(cached[1])
        if "etag" in response.headers:
            self.cache.store(url, response.headers["etag"], response.content)
        return response.json()

    def sweep(
        self,
        sweep: int,
        *,
        limit: int = RUNS_PAGE,
        offset: int = 0,
        status: str | None = None,
        every: bool = False,
    ) -> dict[str, Any]:
        """GET /sweeps/{id}: one page of its runs, or (`every`) all pages joined."""
        page = RUNS_PAGE if every else max(1, limit)
        path = f"/sweeps/{sweep}"
        data: dict[str, Any] = self.get(path, limit=page, offset=offset, status=status)
        while every and len(data["runs"]) < data.get("runs_total", 0) - offset:
            more = self.get(path, limit=page, offset=offset + len(data["runs"]), status=status)
            if not more.get("runs"):
                break
            data["runs"].extend(more["runs"])
        return data

    def get_text(self, path: str, **params: Any) -> str:
        clean = {k: v for k, v in params.items() if v is not None}
        return self.request("GET", path, params=clean).text

    def download(self, path: str, target: Path, **params: Any) -> int:
        """Stream a GET's body into `target` (whole or absent); returns the bytes written."""
        clean = {k: v for k, v in params.items() if v is not None}
        partial = target.with_name(f".{target.name}.{os.getpid()}.part")
        try:
            with self._http.stream("GET", path, params=clean) as response:
                if response.status_code >= 400:
                    response.read()
                    raise CliError(self._failure_line(response))
                written = 0
                with open(partial, "wb") as fh:
                    for chunk in response.iter_bytes():
                        written += fh.write(chunk)
            partial.replace(target)
        except httpx.ConnectError:
            raise CliError(f"cannot reach the sweeps API at {self.url}") from None
        except httpx.HTTPError as exc:
            raise CliError(f"download of {self.url}{path} failed: {exc}") from None
        except OSError as exc:
            raise CliError(f"cannot write {target}: {exc.strerror or exc}") from None
        finally:
            partial.unlink(missing_ok=True)
        return written

    def post(self, path: str, **kwargs: Any) -> Any:
        response = self.request("POST", path, **kwargs)
        return response.json() if response.content else None

    def _failure_line(self, response: httpx.Response) -> str:
        status = response.status_code
        if status == 401:
            if not self.token:
                return (
                    f"the sweeps API at {self.url} needs a token: set SWEEPS_API_TOKEN, or run "
                    f"`sweeps up` in this directory (it writes {TOKEN_FILE})"
                )
            return (
                f"the sweeps API at {self.url} rejected the token from {self.token_source} "
                "(401 Unauthorized); check SWEEPS_API_TOKEN or create one with "
                "`sweeps token create NAME`"
            )
        return f"{status} {response.reason_phrase}: {describe_detail(response)}"


def describe_detail(response: httpx.Response) -> str:
    """The API's error body as one line: spec errors with their location, else the detail."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip().splitlines()[0] if response.text.strip() else "no details"
    detail = body.get("detail", body) if isinstance(body, dict) else body
    return _one_line(detail)


def _one_line(detail: Any) -> str:
    if isinstance(detail, str):
        return " ".join(detail.split())
    if isinstance(detail, dict):
        message = detail.get("message") or detail.get("msg") or detail.get("error")
        location = detail.get("location")
        if message:
            return _one_line(f"{location}: {message}" if location else message)
        return json.dumps(detail, default=str)
    if isinstance(detail, list) and detail:
        # FastAPI validation errors: [{"loc": [...], "msg": ...}, ...]
        parts = []
        for item in detail:
            if isinstance(item, dict) and "msg" in item:
                loc = ".".join(str(p) for p in item.get("loc", []))
                parts.append(f"{loc}: {item['msg']}" if loc else str(item["msg"]))
            else:
                parts.append(_one_line(item))
        return "; ".join(parts)
    return json.dumps(detail, default=str)
