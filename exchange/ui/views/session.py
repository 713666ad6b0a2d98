"""Signing in and out, the language switch, and the front door (``/`` and ``/ui/``)."""

from __future__ import annotations

import datetime as dt
import functools
import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from exchange import i18n
from exchange.api.dependencies import NodeDep, log_failed_token
from exchange.ui import navigation
from exchange.ui.pages import error_page, page_router
from exchange.ui.rendering import render
from exchange.ui.sessions import (
    LANGUAGE_COOKIE,
    SIGN_IN_CSRF_COOKIE,
    CheckedForm,
    OptionalSession,
    Viewer,
    clear_session_cookie,
    secure_cookies,
    set_session_cookie,
)
from nodes import dashboard_sessions, tokens
from nodes.access import AuthenticationError
from schemas.errors import N_
from schemas.labels import Language

router = page_router()
#: Included after every other page router (and the static files), since it matches any path.
fallback = page_router()
front_door = APIRouter(include_in_schema=False)

NextPage = Annotated[str, Query(max_length=2000)]
#: A year: the language is a preference, not a secret.
LANGUAGE_SECONDS = 366 * 24 * 3600


def safe_next(target: str | None) -> str | None:
    """Only a page of this dashboard: never another site (``//evil``, ``/ui\\..``, schemes)."""
    if not target or not target.startswith("/ui/") or "\\" in target or "//" in target:
        return None
    if any(ord(c) < 0x21 for c in target):
        return None
    return target


@front_door.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=307)


@router.get("/ui")
@router.get("/ui/")
async def dashboard_home(session: OptionalSession) -> RedirectResponse:
    if session is None:
        return RedirectResponse("/ui/sign-in", status_code=303)
    return RedirectResponse(navigation.home(session.token.role), status_code=303)


@router.get("/ui/sign-in")
async def sign_in_form(
    request: Request, session: OptionalSession, next: NextPage = "", signed_out: bool = False
) -> Response:
    notice = N_("You are signed out.") if signed_out else None
    return _sign_in_page(request, next=next, signed_in_as=session, notice=notice)


def _sign_in_page(
    request: Request,
    *,
    next: str,
    error: str | None = None,
    status_code: int = 200,
    signed_in_as: dashboard_sessions.DashboardSession | None = None,
    notice: str | None = None,
) -> Response:
    csrf = secrets.token_urlsafe(32)
    response = render(
        request,
        "sign_in.html",
        {
            "next": safe_next(next) or "",
            "error": error,
            "sign_in_csrf": csrf,
            "signed_in_as": signed_in_as,
            "notice": notice,
        },
        status_code=status_code,
    )
    response.set_cookie(
        SIGN_IN_CSRF_COOKIE,
        csrf,
        max_age=3600,
        path="/ui/sign-in",
        secure=secure_cookies(request),
        httponly=True,
        samesite="strict",
    )
    return response


@router.post("/ui/sign-in")
async def sign_in(
    request: Request,
    node: NodeDep,
    token: Annotated[str, Form(max_length=500)],
    csrf: Annotated[str, Form(max_length=200)],
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    expected = request.cookies.get(SIGN_IN_CSRF_COOKIE, "")
    if not expected or not secrets.compare_digest(csrf, expected):
        return _sign_in_page(
            request,
            next=next,
            error=N_(
                "The form was refused: its security token is missing or wrong. Reload the page and try again."
            ),
            status_code=403,
        )
    now = dt.datetime.now(dt.UTC)
    lifetime = dt.timedelta(hours=node.settings.session_hours)
    try:
        cookie, session = await run_in_threadpool(
            functools.partial(
                dashboard_sessions.open_session,
                node.engine,
                secret=token.strip(),
                lifetime=lifetime,
                now=now,
            )
        )
    except AuthenticationError as exc:
        await log_failed_token(request, node, exc, reason=f"dashboard sign-in: {exc}")
        message = (
            N_("This token was revoked or has expired. Ask the node operator for a new one.")
            if isinstance(exc, tokens.RevokedTokenError)
            else N_("This token is not known to this node. Check that you copied all of it.")
        )
        return _sign_in_page(request, next=next, error=message, status_code=401)
    target = safe_next(next) or navigation.home(session.token.role)
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(response, request, cookie, session.expires_at)
    response.delete_cookie(SIGN_IN_CSRF_COOKIE, path="/ui/sign-in")
    return response


@router.post("/ui/sign-out")
async def sign_out(
    request: Request, node: NodeDep, session: Viewer, _form: CheckedForm
) -> Response:
    now = dt.datetime.now(dt.UTC)
    await run_in_threadpool(
        functools.partial(dashboard_sessions.end, node.engine, session, now=now)
    )
    response = RedirectResponse("/ui/sign-in?signed_out=1", status_code=303)
    clear_session_cookie(response, request)
    return response


@router.get("/ui/language/{code}")
async def choose_language(request: Request, code: Language, next: NextPage = "") -> Response:
    """The visible switch: remembered in a cookie, then back to the page it was on."""
    response = RedirectResponse(safe_next(next) or "/ui/", status_code=303)
    response.set_cookie(
        LANGUAGE_COOKIE,
        code,
        max_age=LANGUAGE_SECONDS,
        path="/",
        secure=secure_cookies(request),
        httponly=True,
        samesite="lax",
    )
    return response


@fallback.get("/ui/{anything:path}")
async def not_found(request: Request, anything: str) -> Response:
    """Any other address under /ui/: a page, not JSON. Registered last."""
    sentence = i18n.translated(N_("There is no page at this address."), request.state.language)
    return error_page(request, 404, "Not found", sentence)
