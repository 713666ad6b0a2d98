"""Routes that answer with pages, errors included.

The API answers errors as problem+json; a person in a browser needs a page. ``PageRoute``
catches what a page's dependencies and view raise and renders it: no session sends the
reader to sign in (and back afterwards); a refused role, an unknown report or a bad
parameter becomes a page in the reader's language that says why, with the status the API
would have answered. Every page carries a strict Content-Security-Policy (no inline script,
nothing from another origin) and is never cached: it may show data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.responses import RedirectResponse, Response

from exchange import i18n
from exchange.api.problems import status_of
from exchange.ui.rendering import render
from exchange.ui.sessions import SignInRequiredError, optional_session, page_language
from nodes.access import AuthenticationError
from schemas.errors import N_, ExchangeError, Message
from schemas.labels import Language

log = logging.getLogger("exchange")

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def sign_in_url(request: Request) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"/ui/sign-in?next={quote(target, safe='')}"


def error_page(request: Request, status: int, title: str, detail: str) -> Response:
    if not hasattr(request.state, "language"):  # failed before the page's dependencies ran
        page_language(request)
    return render(
        request,
        "error.html",
        {"title": i18n.translated(title, request.state.language), "detail": detail},
        status_code=status,
    )


class PageRoute(APIRoute):
    """An APIRoute whose errors are pages, with the security headers of a page."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page(request: Request) -> Response:
            try:
                response = await handler(request)
            except SignInRequiredError:
                response = RedirectResponse(sign_in_url(request), status_code=303)
            except AuthenticationError as exc:  # the token behind the session was revoked
                response = error_page(request, 401, "Unauthorized", _detail(exc, request))
            except ExchangeError as exc:
                status, title = status_of(exc)
                response = error_page(request, status, title, _detail(exc, request))
            except RequestValidationError as exc:
                response = error_page(request, 400, "Bad request", _invalid(exc, request))
            except Exception as exc:  # a page, not JSON; nothing of the internals is shown
                log.error(
                    "unhandled %s on %s %s",
                    type(exc).__name__,
                    request.method,
                    request.url.path,
                    exc_info=exc,
                )
                if not hasattr(request.state, "language"):
                    page_language(request)
                sentence = i18n.sentence(Message.of("internal_error"), request.state.language)
                response = error_page(request, 500, "Internal error", sentence)
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return page


def error_sentence(exc: ExchangeError, language: Language) -> str:
    """What an error says, in ``language``: its coded sentence, or its marked text."""
    if exc.message is not None:
        return i18n.sentence(exc.message, language)
    return i18n.translated(str(exc), language)


def _detail(exc: ExchangeError, request: Request) -> str:
    if not hasattr(request.state, "language"):
        page_language(request)
    return error_sentence(exc, request.state.language)


def _invalid(exc: RequestValidationError, request: Request) -> str:
    fields = sorted({str(e.get("loc", ("?",))[-1]) for e in exc.errors()})
    template = i18n.translated(
        N_("This address has a value the page cannot use: {fields}."), request.state.language
    )
    return template.format(fields=", ".join(fields))


def page_router() -> APIRouter:
    """A router whose routes are pages: language first, then the (optional) session."""
    return APIRouter(
        route_class=PageRoute,
        include_in_schema=False,
        dependencies=[Depends(page_language), Depends(optional_session)],
    )
