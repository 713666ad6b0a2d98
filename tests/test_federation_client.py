"""The peer client against peers that are down, slow, flaky, garbled or lying.

Transport failures are simulated with ``httpx2.MockTransport``; one test holds a real
socket open without answering, to show the timeout is real.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import httpx2
import pytest
import stamina
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from exchange.clients.peer import (
    PeerClient,
    PeerKeyUnknownError,
    PeerProtocolError,
    PeerSignatureError,
    PeerUnreachableError,
    fetch_descriptor,
)
from exchange.signing.signatures import (
    RequestMessage,
    ResponseMessage,
    key_id,
    sign_response,
    verify_request,
)
from nodes.identity import NodeKey

URL = "http://xb.test"
ME = Ed25519PrivateKey.generate()
PEER = Ed25519PrivateKey.generate()
STRANGER = Ed25519PrivateKey.generate()


@pytest.fixture(autouse=True)
def no_backoff() -> Iterator[None]:
    """Keep the client's attempts, but do not sleep between them."""
    with stamina.set_testing(True, attempts=10, cap=True):
        yield


def _client(handler: Callable[[httpx2.Request], httpx2.Response], **options: object) -> PeerClient:
    trusted = {key_id(PEER.public_key()): PEER.public_key()}
    return PeerClient(
        httpx2.Client(transport=httpx2.MockTransport(handler)),
        peer_id="XB",
        base_url=URL,
        resolve_key=trusted.get,
        **options,  # type: ignore[arg-type]
    )


def _me() -> NodeKey:
    return NodeKey(kid=key_id(ME.public_key()), private_key=ME)


def _signed_answer(
    request: httpx2.Request, status: int = 200, body: bytes = b'{"ok":true}', key=PEER
) -> httpx2.Response:
    """What an honest node does: answer, signing over the request it got."""
    message = RequestMessage(
        request.method, str(request.url), tuple(request.headers.multi_items()), request.read()
    )
    response = ResponseMessage(status, (("Content-Type", "application/json"),), body, message)
    signed = sign_response(response, private_key=key, now=datetime.now(UTC))
    return httpx2.Response(status, headers=list(signed.headers), content=signed.body)


def test_a_peer_that_is_down_is_named_with_its_url_and_what_happened() -> None:
    calls: list[httpx2.Request] = []

    def refuse(request: httpx2.Request) -> httpx2.Response:
        calls.append(request)
        raise httpx2.ConnectError("connection refused", request=request)

    client = _client(refuse, attempts=3)
    with pytest.raises(PeerUnreachableError) as caught:
        client.post_signed("/v1/releases", b"{}", key=_me())
    message = str(caught.value)
    assert message.startswith(f"peer XB at {URL}/v1/releases: could not be reached")
    assert "ConnectError" in message
    assert "3 attempt(s)" in message
    assert len(calls) == 3


def test_each_attempt_is_signed_anew() -> None:
    seen: list[str] = []

    def flaky(request: httpx2.Request) -> httpx2.Response:
        message = RequestMessage(
            request.method, str(request.url), tuple(request.headers.multi_items()), request.read()
        )
        verified = verify_request(
            message, resolve_key=lambda _k: ME.public_key(), now=datetime.now(UTC)
        )
        seen.append(verified.nonce)
        if len(seen) < 3:
            return httpx2.Response(503)
        return _signed_answer(request)

    exchange = _client(flaky, attempts=5).post_signed("/v1/releases", b"{}", key=_me())
    assert exchange.response.status == 200
    assert len(seen) == 3
    assert len(set(seen)) == 3


def test_gateway_errors_give_up_after_the_attempts() -> None:
    client = _client(lambda _r: httpx2.Response(504), attempts=2)
    with pytest.raises(PeerUnreachableError, match="answered 504; gave up after 2"):
        client.post_signed("/v1/releases", b"{}", key=_me())


@pytest.mark.parametrize("status", [401, 403, 422, 429, 500])
def test_refusals_and_errors_are_not_retried(status: int) -> None:
    calls: list[int] = []

    def refuse(_request: httpx2.Request) -> httpx2.Response:
        calls.append(1)
        return httpx2.Response(status, json={"title": "no", "detail": "because"})

    exchange = _client(refuse, attempts=5).post_signed("/v1/releases", b"{}", key=_me())
    assert exchange.response.status == status
    assert calls == [1]


def test_requests_ask_for_identity_coding_and_refuse_other_codings() -> None:
    def gzipped(request: httpx2.Request) -> httpx2.Response:
        assert request.headers["accept-encoding"] == "identity"
        return httpx2.Response(200, headers={"Content-Encoding": "gzip"}, content=b"\x1f\x8b")

    with pytest.raises(PeerProtocolError, match="gzip-coded"):
        _client(gzipped).post_signed("/v1/releases", b"{}", key=_me())


def test_an_oversized_answer_is_cut_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("exchange.clients.peer.MAX_RESPONSE_BYTES", 1000)
    with pytest.raises(PeerProtocolError, match="more than 1000 bytes"):
        _client(lambda _r: httpx2.Response(200, content=b"x" * 5000)).post_signed(
            "/v1/releases", b"{}", key=_me()
        )


def test_a_slow_peer_times_out_on_a_real_socket() -> None:
    """A server that accepts the connection and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    held: list[socket.socket] = []
    accepting = threading.Thread(target=lambda: held.append(listener.accept()[0]), daemon=True)
    accepting.start()
    client = PeerClient(
        httpx2.Client(),
        peer_id="XB",
        base_url=f"http://127.0.0.1:{port}",
        resolve_key=lambda _k: None,
        timeout=httpx2.Timeout(0.3),
        attempts=2,
    )
    started = time.monotonic()
    try:
        with pytest.raises(PeerUnreachableError, match="timed out"):
            client.post_signed("/v1/releases", b"{}", key=_me())
    finally:
        listener.close()
        for s in held:
            s.close()
    assert time.monotonic() - started < 5


# -- response signatures ---------------------------------------------------------------------


def _exchange(handler: Callable[[httpx2.Request], httpx2.Response]) -> tuple[PeerClient, object]:
    client = _client(handler)
    return client, client.post_signed("/v1/releases", b"{}", key=_me())


def test_a_well_signed_answer_verifies() -> None:
    client, exchange = _exchange(_signed_answer)
    assert client.verify(exchange).key_id == key_id(PEER.public_key())  # type: ignore[arg-type]


def test_an_unsigned_answer_is_refused() -> None:
    client, exchange = _exchange(lambda _r: httpx2.Response(200, json={"ok": True}))
    with pytest.raises(PeerSignatureError, match="not signed"):
        client.verify(exchange)  # type: ignore[arg-type]


def test_an_answer_signed_by_a_stranger_is_refused() -> None:
    client, exchange = _exchange(lambda r: _signed_answer(r, key=STRANGER))
    with pytest.raises(PeerKeyUnknownError, match="key we do not trust"):
        client.verify(exchange)  # type: ignore[arg-type]


def test_an_answer_whose_body_was_changed_is_refused() -> None:
    def tampered(request: httpx2.Request) -> httpx2.Response:
        honest = _signed_answer(request)
        return httpx2.Response(200, headers=honest.headers, content=b'{"ok":false}')

    client, exchange = _exchange(tampered)
    with pytest.raises(PeerSignatureError, match="Content-Digest"):
        client.verify(exchange)  # type: ignore[arg-type]


def test_an_answer_to_another_request_is_refused() -> None:
    """A replayed answer: signed by the peer, but over an earlier request of ours."""
    earlier: list[httpx2.Response] = []

    def replaying(request: httpx2.Request) -> httpx2.Response:
        if not earlier:
            earlier.append(_signed_answer(request))
        return earlier[0]

    client = _client(replaying)
    first = client.post_signed("/v1/releases", b"{}", key=_me())
    client.verify(first)
    second = client.post_signed("/v1/releases", b"{}", key=_me())
    with pytest.raises(PeerSignatureError):
        client.verify(second)


# -- descriptors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "match"),
    [
        (200, b"<html>hello</html>", "invalid descriptor"),
        (200, b'{"id": "XB"}', "invalid descriptor"),
        (404, b"{}", "answered 404"),
    ],
)
def test_a_garbled_descriptor_is_refused(status: int, body: bytes, match: str) -> None:
    http = httpx2.Client(
        transport=httpx2.MockTransport(lambda _r: httpx2.Response(status, content=body))
    )
    with pytest.raises(PeerProtocolError, match=match) as caught:
        fetch_descriptor(http, f"{URL}/.well-known/exchange-node", peer_id="XB")
    assert "peer XB at http://xb.test/.well-known/exchange-node" in str(caught.value)
