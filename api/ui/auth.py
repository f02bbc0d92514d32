"""Who is logged in to the UI: the session cookie checked against the api_tokens table.

Pages redirect to the login form when the cookie is missing or no longer valid; the UI's JSON
endpoints answer 401. State-changing requests must also come from our own pages: SameSite=Lax
keeps the cookie off cross-site POSTs, and the Origin check below also refuses other sites on
the same host (another port is "same-site" to a browser). A form post also needs a write or
admin token (shared/domain/access.py), as the JSON API does.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import Depends, HTTPException, Request, Response
from sqlalchemy.orm import Session

from api.deps import SessionDep
from api.ui import cookie
from shared.db.models import ApiToken
from shared.db.tokens import verify_token
from shared.domain import access


def token_from_cookie(request: Request, db: Session) -> ApiToken | None:
    """The live token the request's session cookie names, else None."""
    value = request.cookies.get(cookie.COOKIE_NAME)
    if not value:
        return None
    ref = cookie.parse_cookie_value(value)
    if ref is None:
        return None
    token = db.get(ApiToken, ref.token_id)
    if token is None or token.revoked_at is not None:
        return None
    if not cookie.signature_matches(value, token.token_hash):
        return None
    return token


def login(db: Session, secret: str) -> ApiToken | None:
    """The token a pasted secret belongs to, if it is live."""
    return verify_token(db, secret.strip())


def set_session_cookie(request: Request, response: Response, token: ApiToken) -> None:
    response.set_cookie(
        cookie.COOKIE_NAME,
        cookie.make_cookie_value(token.id, token.token_hash),
        max_age=cookie.SESSION_SECONDS,
        path="/",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )


def clear_session_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(
        cookie.COOKIE_NAME,
        path="/",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )


def login_redirect(request: Request) -> HTTPException:
    """A 303 to the login form that comes back here afterwards."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return HTTPException(303, headers={"Location": f"/ui/login?next={quote(target, safe='')}"})


def check_same_origin(request: Request) -> None:
    """Refuse a state-changing request whose Origin (or Referer) is another site."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source:
        return  # not a browser, or one that sends neither; the SameSite cookie still applies
    if urlsplit(source).netloc != request.headers.get("host", ""):
        raise HTTPException(403, "cross-site request refused")


def safe_next(target: str | None) -> str:
    """Only same-site paths under /ui are followed after login (no open redirect)."""
    if target and (target == "/ui" or target.startswith("/ui/")):
        return target
    return "/ui/"


# ---------------------------------------------------------------- who is asking


def page_user(request: Request, db: SessionDep) -> ApiToken:
    """Pages: the logged-in token, or a redirect to the login form."""
    token = token_from_cookie(request, db)
    if token is None:
        raise login_redirect(request)
    request.state.ui_token = token  # pages show only the actions this token may take
    return token


def site_user(request: Request, db: SessionDep) -> ApiToken:
    """Form posts any role may send (a preview): logged in, sent from one of our own pages."""
    check_same_origin(request)
    return page_user(request, db)


def form_user(request: Request, db: SessionDep) -> ApiToken:
    """Form posts: logged in with a write or admin token, sent from one of our own pages."""
    token = site_user(request, db)
    access.check_method(token, request.method)
    return token


def data_user(request: Request, db: SessionDep) -> ApiToken:
    """The JSON the pages fetch: 401 rather than a redirect."""
    token = token_from_cookie(request, db)
    if token is None:
        raise HTTPException(401, "log in at /ui/login")
    return token


PageUser = Annotated[ApiToken, Depends(page_user)]
SiteUser = Annotated[ApiToken, Depends(site_user)]
FormUser = Annotated[ApiToken, Depends(form_user)]
DataUser = Annotated[ApiToken, Depends(data_user)]
