"""What a token may do: the rules of its role, and whose sweeps it may cancel and retry.

`read` tokens may only read (GET); `write` tokens may also submit, and cancel and retry the
sweeps they submitted; `admin` tokens may cancel and retry any sweep. The JSON API and the UI
call these same functions.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.db.models import ApiToken, Run, Sweep, TokenRole
from shared.domain.errors import Forbidden, NotFound

# Methods that change nothing: the only ones a `read` token may use.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# POSTs that store and run nothing (a file is judged, not executed): a CI job holding a read
# token may check files before anyone submits them.
READ_ONLY_POSTS = frozenset({"/sweeps/preview"})
_CREATE_HINT = "`sweeps token create NAME --role write`"


def may_write(token: ApiToken) -> bool:
    """Submit sweeps (and cancel and retry its own)."""
    return token.role in (TokenRole.WRITE, TokenRole.ADMIN)


def may_change(token: ApiToken, sweep: Sweep) -> bool:
    """Cancel or retry this sweep and its runs: its owner, or an admin."""
    if token.role == TokenRole.ADMIN:
        return True
    return may_write(token) and sweep.owner_token_id == token.id


def check_method(token: ApiToken, method: str, path: str = "") -> None:
    """Forbidden when a `read` token asks for anything but a read."""
    if may_write(token) or method.upper() in READ_METHODS or path in READ_ONLY_POSTS:
        return
    raise Forbidden(
        f"token '{token.name}' has role read: it may only read (GET) and preview; submitting, "
        f"cancelling and retrying need a write or admin token ({_CREATE_HINT})"
    )


def check_may_change(session: Session, token: ApiToken, sweep_id: int) -> None:
    """Forbidden unless `token` may cancel or retry the sweep; NotFound without the sweep."""
    sweep = session.get(Sweep, sweep_id)
    if sweep is None:
        raise NotFound(f"sweep {sweep_id} does not exist")
    check_method(token, "POST")
    if not may_change(token, sweep):
        whose = "no token (it predates owners)" if sweep.owner_token_id is None else "another token"
        raise Forbidden(
            f"sweep {sweep_id} was submitted by {whose}: only the token that submitted it, "
            f"or an admin token, may cancel or retry it (token '{token.name}' has role "
            f"{token.role.value})"
        )


def check_may_change_run(session: Session, token: ApiToken, run_id: int) -> None:
    """check_may_change for the sweep the run belongs to."""
    sweep_id = session.scalar(select(Run.sweep_id).where(Run.id == run_id))
    if sweep_id is None:
        raise NotFound(f"run {run_id} does not exist")
    check_may_change(session, token, sweep_id)
