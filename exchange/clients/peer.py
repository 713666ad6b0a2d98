"""Talking to one partner node: signed requests, verified responses, bounded waiting.

The HTTP client is injected (``httpx2.Client``, or Starlette's ``TestClient`` for a node in
the same process), so tests and the demo choose the transport. Third-party exceptions are
translated here, at one boundary, into ours, each naming the peer, the URL and what
happened::

    PeerError                    a partner could not give us what we asked (ExchangeError)
    ├── PeerUnreachableError     no connection, timed out, or 502/503/504, after retries
    ├── PeerProtocolError        answered, but not with what the protocol says
    ├── PeerSignatureError       the answer is unsigned or its signature does not verify
    │   └── PeerKeyUnknownError  signed by a key we do not (yet) trust for this peer
    └── PeerRefusedError         answered with a problem: 401, 403, 422, 429...

What is retried, and why it is safe: a failed connection, a timeout and 502/503/504.
Each attempt is signed anew (fresh ``created`` and nonce, so the partner's replay store
never sees one twice). Repeating a release request is safe even if the first attempt was
served: the partner answers an identical query over unchanged data with the stored
release and charges nothing. (If the first is still being computed when the repeat
arrives, the repeat waits for it and gets the same release; past that wait it is a 503,
retried like a gateway error.) Refusals and bad signatures are never retried: they would
not change. Waits grow exponentially with jitter (``stamina``), and the whole operation
is bounded by ``retry_timeout``, so a partner that is down never hangs the node.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx2
import stamina
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from exchange.signing.signatures import (
    RequestMessage,
    ResponseMessage,
    SignatureError,
    UnknownKeyError,
    VerifiedSignature,
    request_from_httpx2,
    sign_request,
    to_httpx2_request,
    verify_response,
)
from nodes.descriptor import WELL_KNOWN, NodeDescriptor
from nodes.identity import NodeKey
from schemas.errors import ExchangeError

DEFAULT_TIMEOUT = httpx2.Timeout(10.0, connect=3.0)
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
RETRY_STATUSES = frozenset({502, 503, 504})


class PeerError(ExchangeError):
    """A partner node could not give us what we asked; the message says who, where, what."""

    def __init__(self, peer_id: str, url: str, what: str) -> None:
        url = url.split("?", 1)[0]  # the endpoint; its query string is protocol detail
        super().__init__(f"peer {peer_id} at {url}: {what}")
        self.peer_id, self.url, self.what = peer_id, url, what


class PeerUnreachableError(PeerError):
    """No connection, a timeout, or a gateway error, on every attempt."""


class PeerProtocolError(PeerError):
    """The partner answered, but not with what the protocol says (garbage, wrong type)."""


class PeerSignatureError(PeerError):
    """The answer is unsigned, or its signature does not verify: it is not stored."""


class PeerKeyUnknownError(PeerSignatureError):
    """The answer is signed by a key we do not trust for this peer (yet: refresh, then retry)."""


class PeerRefusedError(PeerError):
    """The partner refused, with a problem document (RFC 9457)."""

    def __init__(
        self, peer_id: str, url: str, status: int, problem: dict[str, Any], *, signed: bool
    ) -> None:
        title, detail = problem.get("title", ""), problem.get("detail", "")
        super().__init__(peer_id, url, f"refused with {status} {title}: {detail}".rstrip(": "))
        self.status, self.problem, self.signed = status, problem, signed


class _Retryable(Exception):
    """A gateway status: the partner may be back in a moment."""


@dataclass(frozen=True)
class Exchange:
    """A request as signed and sent, and the response as received (not yet judged)."""

    request: RequestMessage
    response: ResponseMessage

    def problem(self) -> dict[str, Any]:
        try:
            parsed = json.loads(self.response.body)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}


def _now() -> datetime:
    return datetime.now(UTC)


class PeerClient:
    """One partner, seen through one injected HTTP client and the keys we trust for it."""

    def __init__(
        self,
        http: httpx2.Client,
        *,
        peer_id: str,
        base_url: str,
        resolve_key: Callable[[str], Ed25519PublicKey | None],
        timeout: httpx2.Timeout = DEFAULT_TIMEOUT,
        attempts: int = 3,
        retry_timeout: float = 30.0,
        max_age: int = 300,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.http, self.peer_id, self.base_url = http, peer_id, base_url.rstrip("/")
        self.resolve_key, self.timeout, self.attempts = resolve_key, timeout, attempts
        self.retry_timeout, self.max_age, self.clock = retry_timeout, max_age, clock

    def _error(self, cls: type[PeerError], url: str, what: str) -> PeerError:
        return cls(self.peer_id, url, what)

    def _send(self, request: httpx2.Request) -> ResponseMessage:
        """One attempt: send, read at most MAX_RESPONSE_BYTES, keep the bytes as received."""
        request.extensions["timeout"] = self.timeout.as_dict()
        response = self.http.send(request, stream=True)
        try:
            if response.status_code in RETRY_STATUSES:
                raise _Retryable(f"answered {response.status_code}")
            coding = response.headers.get("content-encoding", "identity").strip().lower()
            if coding != "identity":
                raise self._error(
                    PeerProtocolError, str(request.url), f"sent a {coding}-coded answer"
                )
            chunks, size = [], 0
            for chunk in response.iter_bytes():  # identity coding: the bytes as sent
                size += len(chunk)
                if size > MAX_RESPONSE_BYTES:
                    raise self._error(
                        PeerProtocolError,
                        str(request.url),
                        f"answered more than {MAX_RESPONSE_BYTES} bytes",
                    )
                chunks.append(chunk)
        finally:
            response.close()
        headers = tuple((n.decode("latin-1"), v.decode("latin-1")) for n, v in response.headers.raw)
        return ResponseMessage(
            response.status_code, headers, b"".join(chunks), request_from_httpx2(request)
        )

    def _with_retries(
        self, url: str, attempt_once: Callable[[], ResponseMessage]
    ) -> ResponseMessage:
        started, tries = time.monotonic(), 0
        try:
            for attempt in stamina.retry_context(
                on=(httpx2.TransportError, _Retryable),
                attempts=self.attempts,
                timeout=self.retry_timeout,
                wait_initial=0.2,
                wait_max=2.0,
                wait_jitter=0.5,
            ):
                with attempt:
                    tries += 1
                    return attempt_once()
        except httpx2.TimeoutException as exc:
            what = f"timed out ({type(exc).__name__})"
        except httpx2.TransportError as exc:
            what = f"could not be reached ({type(exc).__name__}: {exc})"
        except _Retryable as exc:
            what = str(exc)
        elapsed = time.monotonic() - started
        raise self._error(
            PeerUnreachableError,
            url,
            f"{what}; gave up after {tries} attempt(s) in {elapsed:.1f} s",
        )

    def descriptor(self) -> NodeDescriptor:
        """Fetch and parse the peer's public descriptor (unsigned: trust comes later)."""
        url = self.base_url + WELL_KNOWN
        return fetch_descriptor(self.http, url, peer_id=self.peer_id, client=self)

    def post_signed(
        self, path: str, body: bytes, *, key: NodeKey, content_type: str = "application/json"
    ) -> Exchange:
        """POST ``body`` signed with ``key``; retries as the module says. Not yet verified."""
        url = self.base_url + path
        sent: list[RequestMessage] = []

        def attempt_once() -> ResponseMessage:
            message = RequestMessage(
                "POST",
                url,
                (
                    ("Content-Type", content_type),
                    ("Accept", "application/json"),
                    ("Accept-Encoding", "identity"),
                ),
                body,
            )
            signed = sign_request(message, private_key=key.private_key, now=self.clock())
            sent.append(signed)
            return self._send(to_httpx2_request(signed))

        response = self._with_retries(url, attempt_once)
        return Exchange(sent[-1], response)

    def verify(self, exchange: Exchange) -> VerifiedSignature:
        """Check the response signature against this peer's keys; raise a PeerSignatureError."""
        url = exchange.request.url
        try:
            return verify_response(
                exchange.response,
                resolve_key=self.resolve_key,
                now=self.clock(),
                max_age=self.max_age,
            )
        except UnknownKeyError:
            raise self._error(
                PeerKeyUnknownError, url, "signed its answer with a key we do not trust"
            ) from None
        except SignatureError as exc:
            raise self._error(
                PeerSignatureError, url, f"answer refused: {exc}; nothing was stored"
            ) from None

    def refusal(self, exchange: Exchange, *, signed: bool) -> PeerRefusedError:
        return PeerRefusedError(
            self.peer_id,
            exchange.request.url,
            exchange.response.status,
            exchange.problem(),
            signed=signed,
        )


def fetch_descriptor(
    http: httpx2.Client, url: str, *, peer_id: str = "?", client: PeerClient | None = None
) -> NodeDescriptor:
    """GET a descriptor at ``url`` (retried like any safe request) and validate it."""
    helper = client or PeerClient(http, peer_id=peer_id, base_url=url, resolve_key=lambda _k: None)

    def attempt_once() -> ResponseMessage:
        request = httpx2.Request(
            "GET", url, headers={"Accept": "application/json", "Accept-Encoding": "identity"}
        )
        return helper._send(request)

    response = helper._with_retries(url, attempt_once)
    if response.status != 200:
        raise PeerProtocolError(peer_id, url, f"answered {response.status} for its descriptor")
    try:
        return NodeDescriptor.model_validate_json(response.body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise PeerProtocolError(
            peer_id, url, f"sent an invalid descriptor ({where}: {first.get('msg', '')})"
        ) from None
