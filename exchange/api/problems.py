"""Every error leaves the node as ``application/problem+json`` (RFC 9457), in the reader's language.

Domain code raises the exceptions of ``schemas.errors`` (and ``nodes.access``, for callers);
this is the one place that decides their HTTP status. Starlette finds a handler by walking the exception's class hierarchy, so
one handler per branch is enough. Unexpected exceptions become a 500 that says nothing of
the internals (they are logged, without request bodies or credentials).

Languages: ``Accept-Language`` picks en, fr, es or ar (English otherwise). The ``title`` and
the ``detail`` follow it; ``type`` is made from the English title, so it is one identifier
in every language. Every problem answer names its language in ``Content-Language``, English
included, so a client never guesses. A detail raised as a coded ``Message`` is rendered from
the catalogs and its ``code`` is an extension member; a detail given as text is looked up in
the catalogs as it is (a fixed, marked sentence is translated; anything else stays as
written). A problem built without a request at hand (the request guards) picks its language
when it is sent, from the request's own headers.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from exchange import i18n
from nodes.access import AuthenticationError, ForbiddenError
from nodes.releases.pipeline import ReleaseInProgressError
from nodes.reports import IdempotencyConflictError
from schemas import errors
from schemas.errors import N_, Message
from schemas.labels import Language
from schemas.validation import ReportValidationError

log = logging.getLogger("exchange")

PROBLEM_JSON = "application/problem+json"


class PayloadTooLargeError(errors.InvalidInputError):
    """The request body is larger than this node accepts."""


class UnsupportedMediaTypeError(errors.InvalidInputError):
    """The request body is in a format, charset or content coding this endpoint does not read."""


class RequestTimeoutError(errors.InvalidInputError):
    """The request body did not arrive within the node's deadline."""


class ClientDisconnectedError(errors.InvalidInputError):
    """The client closed the connection before its body arrived; nobody reads the answer."""


#: Problem details echo what the client sent only this far: a hostile request cannot make
#: the answer (or the memory that builds it) large.
MAX_DETAIL = 1000
MAX_PARAMS = 20


class RowProblem(BaseModel):
    row: int = Field(
        description="The file's own row: a CSV's line (the header is line 1), or a JSON "
        "report's 1-based index in its rows array"
    )
    field: str = Field(description="A field name, a+b for a combination, * for the whole row")
    value: str = Field(description="The value as sent, cut to 80 characters")
    code: str = Field(description="Stable code of the error, e.g. not_in_codelist")
    detail: str = Field(description="The error in the language asked for (Accept-Language)")


class Problem(BaseModel):
    """RFC 9457 problem details, with our extension members."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(
        default="about:blank", description="Stable identifier, the same in every language"
    )
    title: str = Field(description="The kind of error, in the language asked for")
    status: int
    detail: str = Field(description="What went wrong, in the language asked for")
    code: str | None = Field(
        default=None, description="Stable code of the detail's sentence, e.g. unknown_fields"
    )
    errors: list[RowProblem] | None = Field(default=None, description="Invalid rows, capped")
    total_errors: int | None = Field(default=None, description="All invalid values, shown or not")


#: Titles are English here (``type`` is made from them) and translated when rendered.
_STATUS: list[tuple[type[errors.ExchangeError], int, str]] = [
    (PayloadTooLargeError, 413, N_("Payload too large")),
    (UnsupportedMediaTypeError, 415, N_("Unsupported media type")),
    (RequestTimeoutError, 408, N_("Request timeout")),
    (ClientDisconnectedError, 400, N_("Client closed request")),
    (errors.InvalidInputError, 422, N_("Invalid request")),
    (IdempotencyConflictError, 422, N_("Idempotency key reused")),
    (errors.NotFoundError, 404, N_("Not found")),
    (errors.ConflictError, 409, N_("Conflict")),
    (AuthenticationError, 401, N_("Authentication required")),
    (ForbiddenError, 403, N_("Forbidden")),
    (errors.BudgetExhaustedError, 429, N_("Privacy budget exhausted")),
    (ReleaseInProgressError, 503, N_("Release in progress")),
]

_HTTP_TITLES = {
    400: N_("Bad request"),
    404: N_("Not found"),
    405: N_("Method not allowed"),
    408: N_("Request timeout"),
    415: N_("Unsupported media type"),
    431: N_("Request header fields too large"),
}


def status_of(exc: errors.ExchangeError) -> tuple[int, str]:
    """The HTTP status of ``exc`` and its English title."""
    for cls, code, title in _STATUS:
        if isinstance(exc, cls):
            return code, title
    return 400, N_("Bad request")


def problem_response(
    status: int,
    title: str,
    detail: str | Message,
    *,
    language: Language | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """A problem answer in ``language``; ``title`` is given in English (it makes the ``type``).

    With no ``language`` (a caller without the request), the language is negotiated when the
    response is sent, from the request's ``Accept-Language``; ``body`` holds the English one.
    """
    if language is None:
        return _NegotiatedProblem(status, title, detail, headers, extra)
    return JSONResponse(
        _body(status, title, detail, language, extra),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=_headers(headers, language),
    )


def _body(
    status: int, title: str, detail: str | Message, language: Language, extra: Mapping[str, Any]
) -> dict[str, Any]:
    if isinstance(detail, Message):
        text = i18n.sentence(detail, language)
    else:
        text = i18n.translated(detail, language)
    if len(text) > MAX_DETAIL:
        text = text[:MAX_DETAIL] + " [...]"
    body: dict[str, Any] = {
        "type": f"urn:exchange:problem:{title.lower().replace(' ', '-')}",
        "title": i18n.translated(title, language),
        "status": status,
        "detail": text,
    }
    if isinstance(detail, Message):
        body["code"] = detail.code
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


def _headers(headers: Mapping[str, str] | None, language: Language) -> dict[str, str]:
    return {**(headers or {}), "Content-Language": language}


class _NegotiatedProblem(JSONResponse):
    """A problem that picks its language when sent, from the scope's ``Accept-Language``."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | Message,
        headers: Mapping[str, str] | None,
        extra: Mapping[str, Any],
    ) -> None:
        self._problem = (status, title, detail, headers, extra)
        super().__init__(
            _body(status, title, detail, "en", extra),
            status_code=status,
            media_type=PROBLEM_JSON,
            headers=_headers(headers, "en"),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        language = i18n.negotiate(Headers(scope=scope).get("accept-language"))
        if language == "en":
            await super().__call__(scope, receive, send)
            return
        status, title, detail, headers, extra = self._problem
        localized = problem_response(
            status, title, detail, language=language, headers=dict(headers or {}), **extra
        )
        await localized(scope, receive, send)


def _language(request: Request) -> Language:
    return i18n.negotiate(request.headers.get("accept-language"))


async def _exchange_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.ExchangeError)
    status, title = status_of(exc)
    language = _language(request)
    headers = {"WWW-Authenticate": 'Bearer realm="exchange"'} if status == 401 else None
    extra: dict[str, Any] = dict(exc.problem_extra)
    if isinstance(exc, ReportValidationError):
        return _invalid_rows(exc, status, title, language, extra)
    detail = exc.message if exc.message is not None else str(exc)
    return problem_response(status, title, detail, language=language, headers=headers, **extra)


def _invalid_rows(
    exc: ReportValidationError, status: int, title: str, language: Language, extra: dict[str, Any]
) -> JSONResponse:
    """A refused report: each error with its code, and sentences in the reader's language."""
    extra["errors"] = [
        {
            "row": e.row,
            "field": e.field,
            "value": e.value,
            "code": e.code,
            "detail": i18n.row_detail(e, language, exc.schema),
        }
        for e in exc.errors
    ]
    extra["total_errors"] = exc.total
    detail = i18n.summary(exc.errors, exc.total, language, exc.schema)
    return problem_response(status, title, detail, language=language, **extra)


async def _request_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    issues = [
        {
            "location": ".".join(str(p) for p in e.get("loc", ()))[:200],
            "reason": str(e.get("msg", ""))[:200],
        }
        for e in exc.errors()[:MAX_PARAMS]
    ]
    # pydantic's reasons stay in its English; the sentence around them is translated
    reasons = "; ".join(f"{i['location']}: {i['reason']}" for i in issues[:5])
    detail: str | Message = reasons or Message.of("request_invalid")
    return problem_response(
        422, N_("Invalid request"), detail, language=_language(request), invalid_params=issues
    )


async def _http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail: str | Message = (
        exc.detail if isinstance(exc.detail, str) else "the request could not be served"
    )
    if exc.status_code == 404 and detail == HTTPStatus.NOT_FOUND.phrase:  # the router's own
        detail = Message.of("no_such_path")
    title = _HTTP_TITLES.get(exc.status_code, N_("HTTP error"))
    return problem_response(
        exc.status_code,
        title,
        detail,
        language=_language(request),
        headers=dict(exc.headers or {}) or None,
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error(
        "unhandled %s on %s %s", type(exc).__name__, request.method, request.url.path, exc_info=exc
    )
    return problem_response(
        500, N_("Internal error"), Message.of("internal_error"), language=_language(request)
    )


def install(app: FastAPI) -> None:
    use_problem_json_in_openapi(app)
    app.add_exception_handler(errors.ExchangeError, _exchange_error)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(Exception, _unexpected)


_DESCRIPTIONS = {
    400: "The request is malformed: a header, or a body cut off by the client",
    401: "No bearer token, or one this node does not accept",
    403: "The credential may not do this",
    404: "No such resource",
    408: "The body did not arrive within the node's deadline",
    409: "Conflicts with what is stored",
    413: "The body is larger than this node accepts",
    415: "The body is not JSON or CSV, not UTF-8, or in a content coding this node does not read",
    422: "The request or its values are invalid; invalid rows are listed",
    429: "The privacy budget cannot pay for this release",
    503: "An identical release is still being computed; ask again (nothing was charged)",
}


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the errors an operation can return, all problem+json."""
    return {
        status: {
            "description": _DESCRIPTIONS[status],
            "model": Problem,
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }


def use_problem_json_in_openapi(app: FastAPI) -> None:
    """Document FastAPI's own 422s as what they really are: problem+json."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        spec = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        schemas = spec.setdefault("components", {}).setdefault("schemas", {})
        if "Problem" not in schemas:  # every route documents its errors, so this is a guard
            definition = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(definition.pop("$defs", {}))
            schemas["Problem"] = definition
        for path in spec.get("paths", {}).values():
            for operation in path.values():
                response = operation.get("responses", {}).get("422")
                if response is not None:
                    response["description"] = _DESCRIPTIONS[422]
                    response["content"] = {
                        PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}
                    }
        for unused in ("HTTPValidationError", "ValidationError"):
            spec["components"]["schemas"].pop(unused, None)
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
