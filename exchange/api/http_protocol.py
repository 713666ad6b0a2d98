"""The HTTP/1.1 protocol ``exchange serve`` runs: uvicorn's h11 protocol, answering problem+json.

Some requests never reach the app: h11 refuses a malformed ``Content-Length``, a request
line or header block it cannot parse, or a head larger than its buffer, and uvicorn then
answers a bare ``text/plain`` 400. This subclass sends the same 400 as problem+json, so every
error of the node has one shape. It overrides ``send_400_response``, which is uvicorn's own
hook (its three protocol implementations share it); the socket tests in
``tests/test_hostile_sockets.py`` fail if an upgrade changes it.
"""

from __future__ import annotations

import json

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from exchange.api.problems import PROBLEM_JSON

#: Matches ``h11_max_incomplete_event_size`` in ``exchange serve``.
MAX_HEAD_BYTES = 64 * 1024

_BODY = json.dumps(
    {
        "type": "urn:exchange:problem:bad-request",
        "title": "Bad request",
        "status": 400,
        "detail": "the request could not be parsed as HTTP/1.1: a malformed request line, "
        f"header or Content-Length, or a head larger than {MAX_HEAD_BYTES} bytes",
    }
).encode()


class ProblemH11Protocol(H11Protocol):
    """uvicorn's h11 protocol whose parser-level 400 is problem+json."""

    def send_400_response(self, msg: str) -> None:
        headers = [
            (b"content-type", PROBLEM_JSON.encode()),
            (b"content-length", str(len(_BODY)).encode()),
            (b"connection", b"close"),
        ]
        for event in (
            h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
            h11.Data(data=_BODY),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event))
        self.transport.close()
