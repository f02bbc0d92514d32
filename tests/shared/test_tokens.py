"""Tokens: hashed at rest, verified, revocable, bootstrapped once from SWEEPS_API_TOKEN."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.db import tokens
from shared.db.models import ApiToken


def test_create_stores_only_the_hash_and_verify_accepts_the_secret(session: Session) -> None:
    token, secret = tokens.create_token(session, "alice")
    session.commit()
    assert secret.startswith("swp_") and len(secret) > 40
    stored = session.scalars(select(ApiToken.token_hash)).all()
    assert stored == [hashlib.sha256(secret.encode()).hexdigest()]
    assert secret not in stored
    found = tokens.verify_token(session, secret)
    assert found is not None and found.id == token.id
    assert found.last_used_at is not None


@pytest.mark.parametrize("wrong", ["", "swp_nope", "x" * 1000])
def test_verify_refuses_unknown_secrets(session: Session, wrong: str) -> None:
    tokens.create_token(session, "alice")
    assert tokens.verify_token(session, wrong) is None


def test_revoked_token_is_refused(session: Session) -> None:
    token, secret = tokens.create_token(session, "alice")
    _, other = tokens.create_token(session, "bob")
    assert [t.id for t in tokens.revoke_token(session, token.id)] == [token.id]
    session.commit()
    assert tokens.verify_token(session, secret) is None
    assert tokens.verify_token(session, other) is not None
    assert [t.name for t in tokens.list_tokens(session)] == ["bob"]
    assert len(tokens.list_tokens(session, include_revoked=True)) == 2
    assert tokens.revoke_token(session, token.id) == []  # already revoked
    assert [t.name for t in tokens.revoke_token(session, "bob")] == ["bob"]


def test_bootstrap_is_idempotent_and_respects_revocation(session: Session) -> None:
    first = tokens.ensure_bootstrap_token(session, "s3cret-bootstrap")
    again = tokens.ensure_bootstrap_token(session, "s3cret-bootstrap")
    assert first.id == again.id
    assert tokens.verify_token(session, "s3cret-bootstrap") is not None
    tokens.revoke_token(session, first.id)
    tokens.ensure_bootstrap_token(session, "s3cret-bootstrap")
    assert tokens.verify_token(session, "s3cret-bootstrap") is None
    assert len(session.scalars(select(ApiToken)).all()) == 1
