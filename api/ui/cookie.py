"""The UI session cookie: a signed, expiring reference to an API token, never the token itself.

Cookie value: ``v1.<token id>.<expires unix>.<hmac>``. The HMAC key is the token's stored
sha256 hash, which only the server (the database) knows; the browser holds the raw token only
for the moment it pastes it into the login form. Why this design:

- no new table or secret setting: the database row the API already checks is the key;
- revoking or deleting the token ends every session made with it, at once;
- stateless, so it survives API restarts and works across several API processes;
- a stolen cookie gives access until it expires (like any session), but not the token.

Trade-off: someone who can read the api_tokens table could mint cookies; they could not use
the hash as a bearer token. A per-deployment secret mixed into the key would close that.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

COOKIE_NAME = "sweeps_session"
SESSION_SECONDS = 7 * 24 * 3600
_PREFIX = "v1"


@dataclass(frozen=True)
class SessionRef:
    token_id: int
    expires: int


def _signature(token_hash: str, token_id: int, expires: int) -> str:
    message = f"{_PREFIX}.{token_id}.{expires}".encode()
    key = b"sweeps-ui-session:" + token_hash.encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def make_cookie_value(
    token_id: int, token_hash: str, *, now: float | None = None, seconds: int = SESSION_SECONDS
) -> str:
    """A cookie value for the token with this id and stored hash, valid for `seconds`."""
    expires = int(now if now is not None else time.time()) + seconds
    return f"{_PREFIX}.{token_id}.{expires}.{_signature(token_hash, token_id, expires)}"


def parse_cookie_value(value: str, *, now: float | None = None) -> SessionRef | None:
    """The token id and expiry a well-formed, unexpired cookie names (signature not yet checked)."""
    parts = value.split(".")
    if len(parts) != 4 or parts[0] != _PREFIX or not parts[1].isdigit() or not parts[2].isdigit():
        return None
    ref = SessionRef(int(parts[1]), int(parts[2]))
    if ref.expires <= int(now if now is not None else time.time()):
        return None
    return ref


def signature_matches(value: str, token_hash: str) -> bool:
    """True when the cookie's HMAC was made with this token hash (constant-time compare)."""
    ref = parse_cookie_value(value, now=0)
    if ref is None:
        return False
    expected = _signature(token_hash, ref.token_id, ref.expires)
    return hmac.compare_digest(expected, value.rsplit(".", 1)[1])
