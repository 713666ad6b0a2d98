"""Who is reading a page, in which language, and whether a form really came from our page.

- **Language**: the ``exchange_lang`` cookie set by the visible switch, else the browser's
  ``Accept-Language``; English otherwise.
- **Session**: the ``exchange_session`` cookie (HttpOnly, SameSite=Strict, Secure when the
  node is reached or published over HTTPS, expiring with the session) names a row of
  ``nodes.dashboard_sessions``; the token behind it is re-checked on every page.
- **Roles**: ``signed_in("agency")`` lets only that role through; any other role gets a 403
  page that says why, audited like the API's ``auth.forbidden``.
- **CSRF**: every form carries the session's CSRF value (the sign-in form, before any
  session exists, a value it also sets as a cookie), compared in constant time. SameSite
  cookies already keep other sites' forms out; the token keeps out what SameSite misses.
"""

from __future__ import annotations

import datetime as dt
import functools
import secrets
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.responses import Response

from exchange import i18n
from exchange.api.dependencies import NodeDep, log_refusal
from exchange.ui.navigation import ROLE_NAMES
from nodes import dashboard_sessions
from nodes.access import AuthenticationError, ForbiddenError, Role
from nodes.dashboard_sessions import DashboardSession
from schemas.errors import N_
from schemas.labels import LANGUAGES, Language

SESSION_COOKIE = "exchange_session"
LANGUAGE_COOKIE = "exchange_lang"
SIGN_IN_CSRF_COOKIE = "exchange_signin"
CSRF_FIELD = "csrf"
#: Starlette's default for a form's non-file fields is 1 MiB; ours are a few bytes.
MAX_FIELD_BYTES = 64 * 1024


class SignInRequiredError(Exception):
    """No session: the page sends the reader to the sign-in form, then back."""


def page_language(request: Request) -> Language:
    """The page's language, kept on ``request.state`` for the templates and error pages."""
    chosen = request.cookies.get(LANGUAGE_COOKIE)
    language: Language = (
        chosen if chosen in LANGUAGES else i18n.negotiate(request.headers.get("accept-language"))
    )
    request.state.language = language
    return language


PageLanguage = Annotated[Language, Depends(page_language)]


def secure_cookies(request: Request) -> bool:
    node = request.app.state.node
    public_https = str(node.settings.public_url).startswith("https://")
    return request.url.scheme == "https" or public_https


async def optional_session(request: Request, node: NodeDep) -> DashboardSession | None:
    """The signed-in session, or None; a dead cookie counts as none."""
    request.state.viewer = None
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    now = dt.datetime.now(dt.UTC)
    try:
        session = await run_in_threadpool(
            functools.partial(dashboard_sessions.find, node.engine, cookie, now=now)
        )
    except AuthenticationError:
        return None
    request.state.viewer = session
    request.state.csrf = session.csrf
    return session


OptionalSession = Annotated[DashboardSession | None, Depends(optional_session)]


def signed_in(*roles: Role) -> Callable[..., Awaitable[DashboardSession]]:
    """A dependency: the session, if its token has one of ``roles`` (any role if none)."""

    async def check(request: Request, node: NodeDep, session: OptionalSession) -> DashboardSession:
        if session is None:
            raise SignInRequiredError
        if roles and session.token.role not in roles:
            language = request.state.language

            def named(role: Role) -> str:
                return i18n.translated(ROLE_NAMES[role], language)

            error = ForbiddenError(
                i18n.translated(
                    N_("This page is for the {roles} role; you signed in as {role}."), language
                ).format(roles=" / ".join(map(named, roles)), role=named(session.token.role))
            )
            await log_refusal(
                request,
                node,
                actor=f"token:{session.token.name}",
                role=session.token.role,
                action="auth.forbidden",
                reason=f"dashboard page for the {'/'.join(roles)} role; the token is {session.token.role}",
            )
            raise error
        return session

    return check


Viewer = Annotated[DashboardSession, Depends(signed_in())]
AgencyViewer = Annotated[DashboardSession, Depends(signed_in("agency"))]
AnalystViewer = Annotated[DashboardSession, Depends(signed_in("analyst", "operator"))]
AuditorViewer = Annotated[DashboardSession, Depends(signed_in("auditor"))]
OperatorViewer = Annotated[DashboardSession, Depends(signed_in("operator"))]


async def checked_form(request: Request, session: Viewer) -> FormData:
    """The posted form, once its CSRF value matches the session's; 403 otherwise."""
    form = await request.form(max_part_size=MAX_FIELD_BYTES)
    sent = form.get(CSRF_FIELD)
    if not isinstance(sent, str) or not secrets.compare_digest(sent, session.csrf):
        await form.close()  # an uploaded file's temporary copy goes with the refusal
        raise ForbiddenError(
            N_(
                "The form was refused: its security token is missing or wrong. Reload the page and try again."
            )
        )
    return form


CheckedForm = Annotated[FormData, Depends(checked_form)]


def set_session_cookie(
    response: Response, request: Request, value: str, expires_at: dt.datetime
) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        value,
        expires=expires_at,
        path="/ui",
        secure=secure_cookies(request),
        httponly=True,
        samesite="strict",
    )


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(
        SESSION_COOKIE, path="/ui", secure=secure_cookies(request), httponly=True, samesite="strict"
    )
