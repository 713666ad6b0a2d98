"""Every error leaves the node as ``application/problem+json`` (RFC 9457).

Domain code raises the exceptions of ``schemas.errors``; this is the one place that decides
their HTTP status. Starlette finds a handler by walking the exception's class hierarchy, so
one handler per branch is enough. Unexpected exceptions become a 500 that says nothing of
the internals (they are logged, without request bodies or credentials).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from exchange import i18n
from nodes.releases import ReleaseInProgressError
from nodes.reports import IdempotencyConflictError
from schemas import errors
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

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[RowProblem] | None = Field(default=None, description="Invalid rows, capped")
    total_errors: int | None = Field(default=None, description="All invalid values, shown or not")


_STATUS: list[tuple[type[errors.ExchangeError], int, str]] = [
    (PayloadTooLargeError, 413, "Payload too large"),
    (UnsupportedMediaTypeError, 415, "Unsupported media type"),
    (RequestTimeoutError, 408, "Request timeout"),
    (ClientDisconnectedError, 400, "Client closed request"),
    (errors.InvalidInputError, 422, "Invalid request"),
    (IdempotencyConflictError, 422, "Idempotency key reused"),
    (errors.NotFoundError, 404, "Not found"),
    (errors.ConflictError, 409, "Conflict"),
    (errors.AuthenticationError, 401, "Authentication required"),
    (errors.ForbiddenError, 403, "Forbidden"),
    (errors.BudgetExhaustedError, 429, "Privacy budget exhausted"),
    (ReleaseInProgressError, 503, "Release in progress"),
]


def status_of(exc: errors.ExchangeError) -> tuple[int, str]:
    for cls, code, title in _STATUS:
        if isinstance(exc, cls):
            return code, title
    return 400, "Bad request"


def problem_response(
    status: int, title: str, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    slug = title.lower().replace(" ", "-")
    if len(detail) > MAX_DETAIL:
        detail = detail[:MAX_DETAIL] + " [...]"
    body: dict[str, Any] = {
        "type": f"urn:exchange:problem:{slug}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


async def _exchange_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.ExchangeError)
    status, title = status_of(exc)
    headers = {"WWW-Authenticate": 'Bearer realm="exchange"'} if status == 401 else None
    extra: dict[str, Any] = dict(getattr(exc, "problem_extra", {}) or {})
    if isinstance(exc, ReportValidationError):
        return _invalid_rows(request, exc, status, title, extra)
    return problem_response(status, title, str(exc), headers=headers, **extra)


def _invalid_rows(
    request: Request, exc: ReportValidationError, status: int, title: str, extra: dict[str, Any]
) -> JSONResponse:
    """A refused report: each error with its code, and sentences in the reader's language."""
    language = i18n.negotiate(request.headers.get("accept-language"))
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
    return problem_response(status, title, detail, headers={"Content-Language": language}, **extra)


async def _request_validation(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    issues = [
        {
            "location": ".".join(str(p) for p in e.get("loc", ()))[:200],
            "reason": str(e.get("msg", ""))[:200],
        }
        for e in exc.errors()[:MAX_PARAMS]
    ]
    detail = (
        "; ".join(f"{i['location']}: {i['reason']}" for i in issues[:5]) or "the request is invalid"
    )
    return problem_response(422, "Invalid request", detail, invalid_params=issues)


async def _http_exception(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else "the request could not be served"
    title = {
        400: "Bad request",
        404: "Not found",
        405: "Method not allowed",
        408: "Request timeout",
        415: "Unsupported media type",
        431: "Request header fields too large",
    }.get(exc.status_code, "HTTP error")
    return problem_response(exc.status_code, title, detail, headers=dict(exc.headers or {}) or None)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error(
        "unhandled %s on %s %s", type(exc).__name__, request.method, request.url.path, exc_info=exc
    )
    return problem_response(
        500, "Internal error", "the node failed to answer; the operator can see why in its log"
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
