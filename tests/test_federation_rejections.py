"""Every way a partner request can fail authentication: 401 problem+json, before any policy
or ledger work; nothing charged, no release, no nonce burnt, one audit entry of the refusal."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from exchange.signing.signatures import (
    REQUEST_TAG,
    RESPONSE_TAG,
    RequestMessage,
    content_digest,
    sign_message,
    sign_request,
    to_httpx2_request,
)
from nodes import peers
from nodes.audit import reading
from nodes.identity import load_current
from tests.federation import Member, federation, now, query

URL = "http://xa.test/v1/releases"


@pytest.fixture
def pair(stack: ExitStack, tmp_path: Path, database_urls: Iterator[str]) -> dict[str, Member]:
    return federation(stack, tmp_path, database_urls, ("XA", "XB"))


def _body() -> bytes:
    return query().model_dump_json().encode()


def _message(url: str = URL, body: bytes | None = None) -> RequestMessage:
    return RequestMessage("POST", url, (("Content-Type", "application/json"),), body or _body())


def _signed(
    key: Ed25519PrivateKey, *, url: str = URL, at: datetime | None = None
) -> RequestMessage:
    return sign_request(_message(url), private_key=key, now=at or now())


def _custom(
    key: Ed25519PrivateKey,
    *,
    components: tuple[str, ...] = ("@method", "@target-uri", "content-digest", "content-type"),
    nonce: str | None = "a-fresh-nonce-0001",
    tag: str = REQUEST_TAG,
    created: datetime | None = None,
) -> RequestMessage:
    message = _message()
    message = replace(
        message, headers=(*message.headers, ("Content-Digest", content_digest(message.body)))
    )
    return sign_message(
        message,
        private_key=key,
        components=components,
        created=created or now(),
        nonce=nonce,
        tag=tag,
    )


def _set(message: RequestMessage, name: str, value: str) -> RequestMessage:
    kept = tuple((n, v) for n, v in message.headers if n.lower() != name.lower())
    return replace(message, headers=(*kept, (name, value)))


def _flip_signature(message: RequestMessage) -> RequestMessage:
    value = message.header("signature") or ""
    raw = bytearray(base64.b64decode(value.split(":")[1]))
    raw[0] ^= 1
    return _set(message, "Signature", f"sig1=:{base64.b64encode(bytes(raw)).decode()}:")


Case = Callable[[Ed25519PrivateKey, Member], RequestMessage]

CASES: dict[str, tuple[Case, str]] = {
    "no signature": (lambda _k, _xa: _message(), "missing_signature"),
    "no Signature-Input": (
        lambda k, _xa: replace(
            _signed(k), headers=tuple(h for h in _signed(k).headers if h[0] != "Signature-Input")
        ),
        "missing_signature",
    ),
    "signature covering nothing": (lambda k, _xa: _custom(k, components=()), "missing_component"),
    "empty signature bytes": (
        lambda k, _xa: _set(_signed(k), "Signature", "sig1=::"),
        "invalid_signature",
    ),
    "unknown key": (lambda _k, _xa: _signed(Ed25519PrivateKey.generate()), "unknown_key"),
    "signature does not verify": (lambda k, _xa: _flip_signature(_signed(k)), "invalid_signature"),
    "body changed after signing": (
        lambda k, _xa: replace(_signed(k), body=_body().replace(b"cases", b"admissions")),
        "digest_mismatch",
    ),
    "path changed after signing": (
        lambda k, _xa: replace(_signed(k, url="http://xa.test/v1/other"), url=URL),
        "invalid_signature",
    ),
    "signed for another node": (
        lambda k, _xa: replace(_signed(k, url="http://xc.test/v1/releases"), url=URL),
        "invalid_signature",
    ),
    "method changed after signing": (
        lambda k, _xa: replace(
            sign_request(replace(_message(), method="PUT"), private_key=k, now=now()), method="POST"
        ),
        "invalid_signature",
    ),
    "content type not covered": (
        lambda k, _xa: _custom(k, components=("@method", "@target-uri", "content-digest")),
        "missing_component",
    ),
    "digest not covered": (
        lambda k, _xa: _custom(k, components=("@method", "@target-uri", "content-type")),
        "missing_component",
    ),
    "target not covered": (
        lambda k, _xa: _custom(k, components=("@method", "content-digest", "content-type")),
        "missing_component",
    ),
    "no nonce": (lambda k, _xa: _custom(k, nonce=None), "missing_component"),
    "a response's tag": (lambda k, _xa: _custom(k, tag=RESPONSE_TAG), "invalid_signature"),
    "created too long ago": (
        lambda k, _xa: _signed(k, at=now() - timedelta(seconds=303)),  # 300 s, not 305
        "stale_signature",
    ),
    "created in the future": (
        lambda k, _xa: _signed(k, at=now() + timedelta(seconds=60)),
        "stale_signature",
    ),
    "nonce too long": (lambda k, _xa: _custom(k, nonce="n" * 200), "invalid_nonce"),
}


def _audited_refusals(member: Member) -> int:
    page = reading.entries(member.node.engine, limit=reading.MAX_PAGE)
    assert page.next_start is None
    return sum(
        1 for e in page.entries if e["action"] == "release.request" and e["outcome"] == "denied"
    )


def _assert_rejected(xa: Member, message: RequestMessage, kind: str) -> None:
    before, refusals = xa.counts(), _audited_refusals(xa)
    answer = xa.http.send(to_httpx2_request(message))
    assert answer.status_code == 401, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["www-authenticate"].startswith("Signature")
    assert "signature" not in answer.headers  # nothing to bind a signature to
    problem = answer.json()
    assert problem["status"] == 401, problem
    assert problem["signature_error"] == kind, problem
    assert xa.counts() == before  # nothing charged, no release, no nonce recorded
    assert _audited_refusals(xa) == refusals + 1


@pytest.mark.parametrize("case", list(CASES))
def test_rejected_with_401_and_nothing_charged_or_stored(
    pair: dict[str, Member], case: str
) -> None:
    xa, xb = pair["XA"], pair["XB"]
    build, kind = CASES[case]
    _assert_rejected(xa, build(load_current(xb.settings.keys_dir).private_key, xa), kind)


def test_a_valid_request_passes_so_the_cases_above_are_meaningful(pair: dict[str, Member]) -> None:
    xa, xb = pair["XA"], pair["XB"]
    answer = xa.http.send(
        to_httpx2_request(_signed(load_current(xb.settings.keys_dir).private_key))
    )
    assert answer.status_code == 200, answer.text
    assert "signature" in answer.headers
    custom = _custom(load_current(xb.settings.keys_dir).private_key)
    assert xa.http.send(to_httpx2_request(custom)).status_code == 200


@pytest.mark.parametrize("how", ["revoked", "removed"])
def test_a_revoked_key_or_removed_peer(pair: dict[str, Member], how: str) -> None:
    xa, xb = pair["XA"], pair["XB"]
    key = load_current(xb.settings.keys_dir)
    if how == "revoked":
        peers.revoke_peer_key(xa.node.engine, peer_id="XB", kid=key.kid, now=now())
    else:
        peers.remove_peer(xa.node.engine, peer_id="XB", now=now())
    _assert_rejected(xa, _signed(key.private_key), "unknown_key")


def test_a_replayed_request_is_refused_and_charges_nothing_more(pair: dict[str, Member]) -> None:
    xa, xb = pair["XA"], pair["XB"]
    message = _signed(load_current(xb.settings.keys_dir).private_key)
    assert xa.http.send(to_httpx2_request(message)).status_code == 200
    _assert_rejected(xa, message, "replayed_nonce")


def test_a_forged_request_cannot_burn_a_partners_nonce(pair: dict[str, Member]) -> None:
    """The nonce is recorded only after the signature verifies."""
    xa, xb = pair["XA"], pair["XB"]
    message = _signed(load_current(xb.settings.keys_dir).private_key)
    _assert_rejected(xa, _flip_signature(message), "invalid_signature")
    assert xa.http.send(to_httpx2_request(message)).status_code == 200


def test_the_clock_skew_is_tolerated(pair: dict[str, Member]) -> None:
    xa, xb = pair["XA"], pair["XB"]
    ahead = _signed(load_current(xb.settings.keys_dir).private_key, at=now() + timedelta(seconds=3))
    assert xa.http.send(to_httpx2_request(ahead)).status_code == 200


def test_unsigned_garbage_is_401_not_422(pair: dict[str, Member]) -> None:
    """Authentication comes first: an unsigned request learns nothing about the query."""
    answer = pair["XA"].http.post(
        "/v1/releases", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 401


@pytest.mark.parametrize("path", ["/v1/audit/entries", "/v1/audit/checkpoint", "/v1/reports"])
def test_a_partner_signature_gets_403_on_token_routes(pair: dict[str, Member], path: str) -> None:
    """Partners pull releases only: a verified partner is refused (403), a forger is not (401)."""
    xa, xb = pair["XA"], pair["XB"]
    ask = RequestMessage("GET", f"http://xa.test{path}", (("Content-Type", "application/json"),))
    key = load_current(xb.settings.keys_dir).private_key
    answer = xa.http.send(to_httpx2_request(sign_request(ask, private_key=key, now=now())))
    assert answer.status_code == 403, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert "partner XB" in answer.json()["detail"]
    forger = Ed25519PrivateKey.generate()
    forged = xa.http.send(to_httpx2_request(sign_request(ask, private_key=forger, now=now())))
    assert forged.status_code == 401
