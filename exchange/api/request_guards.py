"""What a request may be, checked before any route reads it: the ``RequestGuardMiddleware``.

Each refusal is problem+json, and none reads the body:

- a ``Content-Encoding`` other than ``identity`` is 415: the node decodes no compressed
  body (a gzip bomb is a few kilobytes that inflate to gigabytes), and a coded body read as
  if it were plain would be refused later with a misleading reason;
- a ``Content-Length`` that is not one decimal number is 400 (uvicorn's parser refuses most
  of these itself, in plain text, before the app sees them; ``exchange serve`` sets its
  limits, see ``exchange.cli.node_commands.serve``);
- an ``Authorization`` header longer than ``MAX_AUTHORIZATION`` is 431: no credential of
  ours is near it, and it is never hashed or compared;
- ``OPTIONS`` on a known path answers 204 with ``Allow``; any other method the path does
  not serve is 405 with the same ``Allow``, gathered from every operation of the OpenAPI
  document on that path (the router alone names only the first route's methods when two
  share a template), so what is documented and what is served cannot drift apart.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from starlette.responses import Response
from starlette.routing import Route, compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from exchange.api.problems import problem_response
from schemas.errors import Message

#: Our bearer tokens are under 100 characters; a DHIS2 ``ApiToken`` is about as long.
MAX_AUTHORIZATION = 4096


class RequestGuardMiddleware:
    """Refuse requests whose headers or method no route could accept."""

    def __init__(
        self, app: ASGIApp, openapi: Callable[[], dict[str, Any]], routes: list[Any]
    ) -> None:
        self.app = app
        self.openapi = openapi  # the document, built on first use (routers are added later)
        self.routes = routes  # the app's own list: its undocumented /docs and /openapi.json
        self._paths: list[tuple[re.Pattern[str], frozenset[str]]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send)
        else:
            await refusal(scope, receive, send)

    def _refusal(self, scope: Scope) -> ASGIApp | None:
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            if name in headers and name == b"content-length":
                return problem_response(400, "Bad request", "Content-Length is given twice")
            headers[name] = value
        coding = headers.get(b"content-encoding", b"identity").strip().lower()
        if coding not in (b"identity", b""):
            return problem_response(
                415,
                "Unsupported media type",
                Message.of("content_encoding_not_read"),
            )
        length = headers.get(b"content-length")
        if length is not None and not (length.isdigit() and len(length) <= 18):
            return problem_response(
                400, "Bad request", "Content-Length must be one decimal number of bytes"
            )
        if len(headers.get(b"authorization", b"")) > MAX_AUTHORIZATION:
            return problem_response(
                431,
                "Request header fields too large",
                f"the Authorization header is longer than {MAX_AUTHORIZATION} bytes; no "
                "credential of this node is",
            )
        return self._method_refusal(scope)

    def _method_refusal(self, scope: Scope) -> ASGIApp | None:
        allowed = self.allowed_methods(scope)
        if not allowed or scope["method"] in allowed:
            return None  # unknown paths are the router's 404
        allow = ", ".join(sorted(allowed | {"OPTIONS"}))
        if scope["method"] == "OPTIONS":
            return Response(status_code=204, headers={"Allow": allow})
        return problem_response(
            405,
            "Method not allowed",
            f"{scope['method'][:16]} is not served here; this path allows {allow}",
            headers={"Allow": allow},
        )

    def allowed_methods(self, scope: Scope) -> set[str]:
        """Every method of every operation whose path template matches the request's path."""
        if self._paths is None:
            self._paths = self._path_table()
        path = scope["path"]
        allowed: set[str] = set()
        for pattern, methods in self._paths:
            if pattern.match(path):
                allowed |= methods
        return allowed

    def _path_table(self) -> list[tuple[re.Pattern[str], frozenset[str]]]:
        table = [
            (compile_path(path)[0], frozenset(m.upper() for m in operations))
            for path, operations in self.openapi().get("paths", {}).items()
        ]
        table += [
            (route.path_regex, frozenset(route.methods))
            for route in self.routes
            if isinstance(route, Route) and route.methods
        ]
        return table
