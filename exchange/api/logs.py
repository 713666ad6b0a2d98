"""Structured logs: one JSON object per line on stderr, each naming the request it belongs to.

Every request gets an id: the caller's ``X-Request-Id`` if well formed (up to 64 letters,
digits, ``.``, ``_``, ``-``), else a new one. It is returned in the response's
``X-Request-Id`` and set in a context variable that `JsonFormatter` puts on every line
logged while the request is handled, uvicorn's access line included: an operator can go
from a partner's complaint to every line of that request.

What a line never carries: headers (Authorization, cookies), query strings (a value may be
sensitive; the access line keeps the path only), bodies, report values, and exception
messages (a validation error's message can quote the value it refused): an exception is
logged as its type and traceback frames. Messages logged by our code name things (peer
ids, tree sizes), never values; that is the callers' side of this rule.

`log_config` is the ``logging.config.dictConfig`` that ``exchange serve`` hands uvicorn, so
every worker logs the same way.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import traceback
import uuid
from contextvars import ContextVar
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "X-Request-Id"
_WELL_FORMED = re.compile(r"[A-Za-z0-9._-]{1,64}")

#: The id of the request being handled, for every log line written while handling it.
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


def accept_or_make(incoming: str | None) -> str:
    """The caller's request id if well formed, else a fresh random one."""
    if incoming is not None and _WELL_FORMED.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Pure ASGI (no buffering): sets `request_id` and returns it in ``X-Request-Id``.

    The context variable is not reset when the request ends: each request runs in its own
    task (its own copy of the context), and uvicorn logs an unhandled exception after the
    app has returned, still in that task, where the id should stay on the line.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next(
            (v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), None
        )
        rid = accept_or_make(incoming)
        request_id.set(rid)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers[HEADER] = rid
            await send(message)

        await self.app(scope, receive, send_with_id)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC), level, logger, message, request_id."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        if record.name == "uvicorn.access" and isinstance(record.args, tuple):
            line |= _access(record.args)
        else:
            line["message"] = record.getMessage()
        line["request_id"] = request_id.get()
        if record.exc_info and record.exc_info[0] is not None:
            kind, _message, tb = record.exc_info
            line["exception"] = {  # never the message: it may quote a refused value
                "type": kind.__name__,
                "traceback": "".join(traceback.format_tb(tb)),
            }
        return json.dumps(line, ensure_ascii=False, default=str)


def _access(args: tuple[Any, ...]) -> dict[str, Any]:
    """Uvicorn's access record ``(client, method, path?query, http version, status)``,
    without the query string."""
    if len(args) != 5:
        return {"message": "request"}
    client, method, full_path, http_version, status = args
    return {
        "message": "request",
        "method": method,
        "path": str(full_path).split("?", 1)[0],
        "status": status,
        "http_version": http_version,
        "client": client,
    }


def log_config(level: str = "info") -> dict[str, Any]:
    """The dictConfig for ``exchange serve``: uvicorn's loggers and ours, JSON on stderr."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    upper = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {"stderr": handler},
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": upper, "propagate": False},
            "uvicorn.error": {"level": upper},
            "uvicorn.access": {"handlers": ["stderr"], "level": upper, "propagate": False},
        },
        "root": {"handlers": ["stderr"], "level": upper},
    }
