"""API tokens: only a sha256 of each secret is stored; the secret is shown once, at creation."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.db.models import ApiToken, TokenRole, utcnow

TOKEN_PREFIX = "swp_"
BOOTSTRAP_NAME = "bootstrap"
# Writing last_used_at on every request would turn each read into a write; once a minute is
# precise enough to see which tokens are in use.
_LAST_USED_RESOLUTION = timedelta(seconds=60)


def hash_token(secret: str) -> str:
    """The stored form of a secret: its sha256 as hex."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def generate_secret() -> str:
    """A new random secret (256 bits), recognisable by its prefix."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def create_token(
    session: Session, name: str, role: TokenRole = TokenRole.WRITE
) -> tuple[ApiToken, str]:
    """Store a new token; returns the row and the secret, which is not kept anywhere."""
    secret = generate_secret()
    token = ApiToken(name=name, token_hash=hash_token(secret), role=role)
    session.add(token)
    session.flush()
    return token, secret


def verify_token(session: Session, secret: str) -> ApiToken | None:
    """The live (not revoked) token whose secret this is, else None."""
    if not secret:
        return None
    digest = hash_token(secret)
    # The lookup is by hash, so timing reveals nothing about stored secrets; the final
    # comparison is still constant-time so no code path compares secrets byte by byte.
    token = session.scalars(select(ApiToken).where(ApiToken.token_hash == digest)).first()
    if token is None or not hmac.compare_digest(token.token_hash, digest):
        return None
    if token.revoked_at is not None:
        return None
    now = utcnow()
    if token.last_used_at is None or now - token.last_used_at > _LAST_USED_RESOLUTION:
        token.last_used_at = now
        session.flush()
    return token


def revoke_token(session: Session, token_id_or_name: int | str) -> list[ApiToken]:
    """Revoke the token with this id, or every live token with this name; returns those revoked."""
    query = select(ApiToken).where(ApiToken.revoked_at.is_(None))
    if isinstance(token_id_or_name, int):
        query = query.where(ApiToken.id == token_id_or_name)
    else:
        query = query.where(ApiToken.name == token_id_or_name)
    tokens = list(session.scalars(query))
    now = utcnow()
    for token in tokens:
        token.revoked_at = now
    session.flush()
    return tokens


def list_tokens(session: Session, *, include_revoked: bool = False) -> list[ApiToken]:
    """Tokens by id (hashes only; secrets are never stored)."""
    query = select(ApiToken).order_by(ApiToken.id)
    if not include_revoked:
        query = query.where(ApiToken.revoked_at.is_(None))
    return list(session.scalars(query))


def ensure_bootstrap_token(session: Session, secret: str, name: str = BOOTSTRAP_NAME) -> ApiToken:
    """Store SWEEPS_API_TOKEN's hash once; a bootstrap token revoked earlier stays revoked.

    It is an admin token: the stack's own token (`sweeps up`) may do everything, as before roles.
    """
    digest = hash_token(secret)
    token = session.scalars(select(ApiToken).where(ApiToken.token_hash == digest)).first()
    if token is None:
        token = ApiToken(name=name, token_hash=digest, role=TokenRole.ADMIN)
        session.add(token)
        session.flush()
    return token
