"""Dashboard sign-in that survives new tabs: an HttpOnly session cookie with CSRF protection.

Rules:
- `POST /api/v1/session {"token": ...}` with a valid API token opens a server-side session
  (calltracking/store/dashboard_sessions.py) and sets the cookie `ct_session`: HttpOnly,
  SameSite=Strict, Path=/, Max-Age of the session. `Secure` is set when the browser reached us
  over https: the request itself is TLS, or a trusted proxy (CALLTRACKING_TRUSTED_PROXIES) says
  `X-Forwarded-Proto: https`. On plain http (the demo on 127.0.0.1) the cookie has no `Secure`,
  since a browser drops Secure cookies set over http; SameSite=Strict and HttpOnly still hold.
- A sign-in from another site is refused (403): `Sec-Fetch-Site: cross-site`, or an `Origin`
  that is not ours, so no page can sign a browser into someone else's account.
- A request without `Authorization` but with the cookie acts as the session's principal. Every
  method other than GET, HEAD and OPTIONS then needs the header `X-CSRF-Token` with the token
  the sign-in (and `GET /api/v1/session`) answered; missing or wrong: 403 `csrf`. Requests with
  a Bearer token are untouched by all of this (the cookie is then ignored).
- `DELETE /api/v1/session` ends the session server-side and clears the cookie.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from aiohttp import web

from calltracking.core.errors import InvalidInput
from calltracking.services import Services
from calltracking.store.dashboard_sessions import (
    SESSION_TTL,
    csrf_token,
    end_session,
    find_session,
    open_session,
)
from calltracking.store.tokens import Principal
from web.api import validation as v
from web.api.context import Ctx
from web.api.errors import Forbidden, Unauthorized

log = logging.getLogger(__name__)
SESSION_COOKIE = "ct_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class CsrfRefused(Forbidden):
    code = "csrf"


def uses_session(request: web.Request) -> bool:
    return "Authorization" not in request.headers and SESSION_COOKIE in request.cookies


async def session_principal(request: web.Request, services: Services) -> Principal:
    """Who the session cookie acts as; 401 when it is unknown or over, 403 without CSRF."""
    secret = request.cookies[SESSION_COOKIE]
    async with services.db.read() as conn:
        session = await find_session(conn, secret, services.config.admin_token, services.clock())
    if session is None:
        raise Unauthorized("the session is over: sign in again")
    if request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), csrf_token(secret).encode()):
            raise CsrfRefused(f"send the {CSRF_HEADER} header the sign-in gave")
    return session.principal


def served_over_https(request: web.Request, trusted: tuple[str, ...]) -> bool:
    if request.secure:
        return True
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return proto == "https" and request.remote in trusted


def _refuse_other_sites(request: web.Request, https: bool) -> None:
    if request.headers.get("Sec-Fetch-Site", "") == "cross-site":
        raise Forbidden("sign in from this tracker's own pages")
    origin = request.headers.get("Origin")
    ours = f"{'https' if https else 'http'}://{request.host}"
    if origin is not None and origin != ours:
        raise Forbidden("sign in from this tracker's own pages")


def _answer(principal: Principal, secret: str | None, expires_at: Any) -> dict[str, Any]:
    return {
        "admin": principal.admin,
        "account_id": principal.account_id,
        "csrf": csrf_token(secret) if secret else None,
        "expires_at": expires_at.isoformat() if expires_at else None,
    }


async def sign_in(ctx: Ctx) -> web.StreamResponse:
    request, services = ctx.request, ctx.services
    https = served_over_https(request, services.config.trusted_proxies)
    _refuse_other_sites(request, https)
    body = await v.read_object(request)
    v.check_fields(body, required=("token",))
    token = body["token"]
    if not isinstance(token, str) or not token.strip():
        raise InvalidInput("token", "paste an API token")
    async with services.db.write() as conn:
        opened = await open_session(conn, token.strip(), services.config.admin_token, ctx.now())
    if opened is None:
        raise Unauthorized("the token is not valid")
    session = opened.session
    who = "admin" if session.principal.admin else f"account {session.principal.account_id}"
    log.info("dashboard sign-in: %s, from %s", who, request.remote)
    response = web.json_response(
        _answer(session.principal, opened.secret, session.expires_at), status=201
    )
    response.set_cookie(
        SESSION_COOKIE,
        opened.secret,
        max_age=int(SESSION_TTL.total_seconds()),
        path="/",
        httponly=True,
        secure=https,
        samesite="Strict",
    )
    response.headers["Cache-Control"] = "no-store"
    return response


async def current(ctx: Ctx) -> web.StreamResponse:
    """Who is signed in, and the CSRF token for this session (a new tab asks here)."""
    secret = ctx.request.cookies.get(SESSION_COOKIE) if uses_session(ctx.request) else None
    expires_at = None
    if secret is not None:
        async with ctx.services.db.read() as conn:
            found = await find_session(conn, secret, ctx.services.config.admin_token, ctx.now())
        expires_at = found.expires_at if found else None
    response = web.json_response(_answer(ctx.who, secret, expires_at))
    response.headers["Cache-Control"] = "no-store"
    return response


async def sign_out(ctx: Ctx) -> web.StreamResponse:
    if uses_session(ctx.request):
        async with ctx.services.db.write() as conn:
            ended = await end_session(conn, ctx.request.cookies[SESSION_COOKIE])
        log.info("dashboard sign-out: %s session ended: %s", ctx.scope or "admin", ended)
    response = web.Response(status=204)
    response.del_cookie(SESSION_COOKIE, path="/")
    return response
