"""Tests for exchange.signing.signatures and exchange.signing.content_digest.

Known answers come from RFC 9421 and RFC 9530, kept verbatim in the shared test data.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from http_message_signatures import HTTPMessageSigner
from http_message_signatures.algorithms import ED25519
from http_message_signatures.httpx2 import adapt_message
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from exchange.signing.signatures import (
    REQUEST_TAG,
    DigestMismatchError,
    InvalidSignatureError,
    MissingComponentError,
    MissingSignatureError,
    RequestMessage,
    ResponseMessage,
    SignatureError,
    StaleSignatureError,
    UnknownKeyError,
    VerifiedSignature,
    content_digest,
    key_id,
    parse_public_key,
    request_from_httpx2,
    request_from_starlette,
    serialize_public_key,
    sign_message,
    sign_request,
    sign_response,
    to_httpx2_request,
    verify_content_digest,
    verify_request,
    verify_response,
)

# The RFC 9421 / RFC 9530 examples verbatim (a copy of shared/testdata/rfc9421_vectors.json).
VECTORS = json.loads((Path(__file__).parent / "data" / "rfc9421_vectors.json").read_text())[
    "vectors"
]
NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
URL = "https://node-b.example/v1/pull?schema=weekly-epi%401"
BODY = b'{"measures": ["cases"], "group_by": ["admin1"]}'


# -- helpers ------------------------------------------------------------------------------


def unwrap(name: str) -> str:
    """A vector with its RFC 8792 single-backslash folding undone (Section 7.2.2)."""
    text = VECTORS[name].removeprefix("\n")
    if text.startswith("NOTE: '\\' line wrapping per RFC 8792\n\n"):
        text = text.split("\n\n", 1)[1]
    return re.sub(r"\\\n[ \t]*", "", text)


def parse_http(text: str) -> tuple[str, list[tuple[str, str]], bytes]:
    """Start line, field lines, and the body framed by Content-Length."""
    head, _, rest = text.partition("\n\n")
    start, *lines = head.split("\n")
    fields = [(n, v) for n, _, v in (line.partition(": ") for line in lines)]
    length = int(dict((n.lower(), v) for n, v in fields).get("content-length", "0"))
    body = rest.encode()[:length]
    assert len(body) == length
    return start, fields, body


def rfc_fields(name: str) -> dict[str, str]:
    """A vector that is a block of field lines."""
    return dict(line.split(": ", 1) for line in unwrap(name).strip("\n").split("\n"))


def rfc_request(name: str) -> RequestMessage:
    start, fields, body = parse_http(unwrap(name))
    method, target, _ = start.split(" ")
    host = dict((n.lower(), v) for n, v in fields)["host"]
    return RequestMessage(method, f"https://{host}{target}", tuple(fields), body)


def sf_bytes(field_value: str) -> bytes:
    """The byte sequence in ``label=:base64:``."""
    return base64.b64decode(field_value.split("=:", 1)[1].rstrip(":"))


def rfc_key() -> Ed25519PrivateKey:
    pem = VECTORS["KEY_ED25519"]
    private_pem = pem[pem.index("-----BEGIN PRIVATE KEY-----") :].encode()
    key = load_pem_private_key(private_pem, password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return key


def registry(*keys: Ed25519PrivateKey) -> Callable[[str], Ed25519PublicKey | None]:
    """A resolver that knows exactly these nodes, by derived key id."""
    known = {key_id(k.public_key()): k.public_key() for k in keys}
    return known.get


def request(body: bytes = BODY, **changes: object) -> RequestMessage:
    message = RequestMessage("POST", URL, (("Content-Type", "application/json"),), body)
    return replace(message, **changes)  # type: ignore[arg-type]


def set_header(message: RequestMessage, name: str, value: str | None) -> RequestMessage:
    kept = tuple((n, v) for n, v in message.headers if n.lower() != name.lower())
    return replace(message, headers=kept if value is None else (*kept, (name, value)))


@pytest.fixture
def partner() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def node() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


# -- RFC known answers ------------------------------------------------------------------------

B26_COMPONENTS = ("date", "@method", "@path", "@authority", "content-type", "content-length")
B26_CREATED = datetime.fromtimestamp(1618884473, UTC)


def test_rfc9421_b26_signature_base_from_the_library() -> None:
    message = adapt_message(to_httpx2_request(rfc_request("TEST_REQUEST")))
    prepared = HTTPMessageSigner(signature_algorithm=ED25519).prepare(
        message,
        key_id="test-key-ed25519",
        created=B26_CREATED,
        label="sig-b26",
        include_alg=False,
        covered_component_ids=B26_COMPONENTS,
        use_existing_digest=True,  # the message's sha-512 digest is not covered here
    )
    expected = unwrap("B26_BASE").rstrip("\n").encode()
    assert prepared.signature_base == expected
    signature = sf_bytes(rfc_fields("B26_HDRS")["Signature"])
    rfc_key().public_key().verify(signature, expected)  # the RFC's own signature, its base


def test_rfc9421_b26_signed_byte_for_byte() -> None:
    signed = sign_message(
        rfc_request("TEST_REQUEST"),
        private_key=rfc_key(),
        components=B26_COMPONENTS,
        created=B26_CREATED,
        keyid="test-key-ed25519",
        label="sig-b26",
        include_alg=False,
    )
    expected = rfc_fields("B26_HDRS")
    assert signed.header("Signature-Input") == expected["Signature-Input"]
    assert signed.header("Signature") == expected["Signature"]


def test_rfc9421_b26_is_refused_by_our_profile() -> None:
    """The RFC signature is valid RFC 9421, but has no nonce, tag or digest: not ours."""
    signed = rfc_request("TEST_REQUEST")
    for name, value in rfc_fields("B26_HDRS").items():
        signed = set_header(signed, name, value)
    with pytest.raises(MissingComponentError, match="nonce"):
        verify_request(signed, resolve_key=lambda _: rfc_key().public_key(), now=B26_CREATED)


def test_rfc_test_key_serializes_as_its_jwk() -> None:
    jwk = json.loads(VECTORS["KEY_ED25519_JWK"])
    public = rfc_key().public_key()
    assert serialize_public_key(public) == jwk["x"]
    assert parse_public_key(jwk["x"]).public_bytes_raw() == public.public_bytes_raw()
    digest = hashlib.sha256(public.public_bytes_raw()).digest()
    assert key_id(public) == base64.urlsafe_b64encode(digest).decode().rstrip("=")
    assert len(key_id(public)) == 43


@pytest.mark.parametrize("algorithm", ["sha-256", "sha-512"])
def test_rfc9530_appendix_d_digests(algorithm: str) -> None:
    pairs = re.findall(r"^(\S+) -\s+(:\S+:)$", unwrap("RFC9530_APPX_D"), re.MULTILINE)
    table = dict(pairs)
    assert len(table) == 8  # every algorithm in the appendix, so unwrapping worked
    body = b'{"hello": "world"}'
    assert content_digest(body, algorithm) == f"{algorithm}={table[algorithm]}"
    verify_content_digest(f"{algorithm}={table[algorithm]}", body)


def test_rfc9530_appendix_b1_response_with_its_newline() -> None:
    _, fields, body = parse_http(unwrap("RFC9530_APPX_B1_RESPONSE"))
    value = dict(fields)["Content-Digest"]
    assert body == b'{"hello": "world"}\n'
    assert content_digest(body) == value
    verify_content_digest(value, body)
    with pytest.raises(DigestMismatchError):
        verify_content_digest(value, body.rstrip(b"\n"))


def test_rfc9421_request_sha512_digest_is_accepted() -> None:
    message = rfc_request("TEST_REQUEST")
    verify_content_digest(message.header("Content-Digest") or "", message.body)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "sha-256",
        "sha-256=:not base64:",
        "sha-256=:AAAA:",  # wrong length
        "md5=:Sd/dVLAcvNLSq16eXua5uQ==:",  # cannot be checked
        "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:, sha-256=:AAAA:",
        "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:, md5=:Sd/dVLAcvNLSq16eXua5uQ==:",
        "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:\u00e9",
    ],
)
def test_content_digest_rejects_what_it_cannot_check(value: str) -> None:
    with pytest.raises(DigestMismatchError):
        verify_content_digest(value, b'{"hello": "world"}')


def test_content_digest_refuses_unknown_algorithm_for_sending() -> None:
    with pytest.raises(ValueError, match="md5"):
        content_digest(b"", "md5")


# -- keys ---------------------------------------------------------------------------------


@given(st.binary(min_size=32, max_size=32))
def test_public_key_text_round_trip(raw: bytes) -> None:
    key = Ed25519PublicKey.from_public_bytes(raw)
    text = serialize_public_key(key)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", text)
    assert parse_public_key(text).public_bytes_raw() == raw


@pytest.mark.parametrize(
    "text",
    [
        "",
        "JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs=",  # padded
        "JrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs",  # standard alphabet
        "JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bt",  # non-canonical final bits
        "JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0b",  # short
        "JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs\n",
    ],
)
def test_public_key_parse_rejects_other_spellings(text: str) -> None:
    with pytest.raises(ValueError):
        parse_public_key(text)


# -- requests: round trip -------------------------------------------------------------------


def test_request_round_trip(partner: Ed25519PrivateKey) -> None:
    signed = sign_request(request(), private_key=partner, now=NOW)
    verified = verify_request(signed, resolve_key=registry(partner), now=NOW)
    assert isinstance(verified, VerifiedSignature)
    assert verified.key_id == key_id(partner.public_key())
    assert verified.created == NOW
    assert f'nonce="{verified.nonce}"' in (signed.header("Signature-Input") or "")
    assert set(verified.components) == {
        '"@method"',
        '"@target-uri"',
        '"content-digest"',
        '"content-type"',
    }
    assert signed.header("Content-Digest") == content_digest(BODY)
    assert 'alg="ed25519"' in (signed.header("Signature-Input") or "")


def test_request_nonces_are_fresh(partner: Ed25519PrivateKey) -> None:
    nonces = {
        verify_request(
            sign_request(request(), private_key=partner, now=NOW),
            resolve_key=registry(partner),
            now=NOW,
        ).nonce
        for _ in range(20)
    }
    assert len(nonces) == 20
    assert all(len(n) >= 22 for n in nonces)


def test_request_without_content_type_or_body(partner: Ed25519PrivateKey) -> None:
    message = RequestMessage("GET", URL)
    signed = sign_request(message, private_key=partner, now=NOW)
    verified = verify_request(signed, resolve_key=registry(partner), now=NOW)
    assert '"content-type"' not in verified.components
    # A content-type added later was not signed, so it must not pass.
    with pytest.raises(MissingComponentError, match="content-type"):
        verify_request(
            set_header(signed, "Content-Type", "text/csv"),
            resolve_key=registry(partner),
            now=NOW,
        )


def test_resigning_replaces_old_signature_and_digest(partner: Ed25519PrivateKey) -> None:
    first = sign_request(request(), private_key=partner, now=NOW)
    second = sign_request(replace(first, body=b"{}"), private_key=partner, now=NOW)
    assert len([n for n, _ in second.headers if n.lower() == "signature"]) == 1
    assert verify_request(second, resolve_key=registry(partner), now=NOW).nonce


# -- requests: every rejection ----------------------------------------------------------------


def verify(message: RequestMessage, key: Ed25519PrivateKey, **kwargs: object) -> None:
    options: dict[str, object] = {"resolve_key": registry(key), "now": NOW, **kwargs}
    verify_request(message, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "dropped", [("Signature",), ("Signature-Input",), ("Signature", "Signature-Input")]
)
def test_unsigned_request(partner: Ed25519PrivateKey, dropped: tuple[str, ...]) -> None:
    signed = sign_request(request(), private_key=partner, now=NOW)
    for name in dropped:
        signed = set_header(signed, name, None)
    with pytest.raises(MissingSignatureError):
        verify(signed, partner)


def test_empty_component_list(partner: Ed25519PrivateKey) -> None:
    signed = sign_message(
        request(), private_key=partner, components=(), created=NOW, nonce="n", tag=REQUEST_TAG
    )
    assert "sig1=();" in (signed.header("Signature-Input") or "")
    with pytest.raises(MissingComponentError, match="no components"):
        verify(signed, partner)


def test_unknown_key(partner: Ed25519PrivateKey) -> None:
    stranger = Ed25519PrivateKey.generate()
    signed = sign_request(request(), private_key=stranger, now=NOW)
    with pytest.raises(UnknownKeyError):
        verify(signed, partner)


def test_revoked_key_raised_by_the_resolver(partner: Ed25519PrivateKey) -> None:
    def revoked(_: str) -> Ed25519PublicKey:
        raise UnknownKeyError("this partner's key was revoked")

    signed = sign_request(request(), private_key=partner, now=NOW)
    with pytest.raises(UnknownKeyError, match="revoked"):
        verify_request(signed, resolve_key=revoked, now=NOW)


def test_resolver_outage_is_not_reported_as_a_bad_signature(partner: Ed25519PrivateKey) -> None:
    def down(_: str) -> Ed25519PublicKey:
        raise ConnectionError("database unavailable")

    signed = sign_request(request(), private_key=partner, now=NOW)
    with pytest.raises(ConnectionError):
        verify_request(signed, resolve_key=down, now=NOW)


def test_signature_by_another_key_under_a_registered_key_id(partner: Ed25519PrivateKey) -> None:
    forger = Ed25519PrivateKey.generate()
    signed = sign_message(
        with_digest(request()),
        private_key=forger,
        components=("@method", "@target-uri", "content-digest", "content-type"),
        created=NOW,
        keyid=key_id(partner.public_key()),
        nonce="n",
        tag=REQUEST_TAG,
    )
    with pytest.raises(InvalidSignatureError):
        verify(signed, partner)


def with_digest(message: RequestMessage) -> RequestMessage:
    return set_header(message, "Content-Digest", content_digest(message.body))


def test_flipped_signature_byte(partner: Ed25519PrivateKey) -> None:
    signed = sign_request(request(), private_key=partner, now=NOW)
    raw = bytearray(sf_bytes(signed.header("Signature") or ""))
    raw[0] ^= 1
    forged = set_header(signed, "Signature", f"sig1=:{base64.b64encode(raw).decode()}:")
    with pytest.raises(InvalidSignatureError):
        verify(forged, partner)


def test_tampered_body(partner: Ed25519PrivateKey) -> None:
    signed = sign_request(request(), private_key=partner, now=NOW)
    with pytest.raises(DigestMismatchError):
        verify(replace(signed, body=BODY.replace(b"admin1", b"admin3")), partner)


def test_tampered_body_with_recomputed_digest(partner: Ed25519PrivateKey) -> None:
    signed = sign_request(request(), private_key=partner, now=NOW)
    with pytest.raises(InvalidSignatureError):
        verify(with_digest(replace(signed, body=b"{}")), partner)


@pytest.mark.parametrize(
    "change",
    [
        {"url": URL.replace("/v1/pull", "/v1/pul1")},
        {"url": URL.replace("weekly-epi%401", "line-list%401")},
        {"url": URL.replace("node-b", "node-c")},
        {"url": URL.replace("https", "http")},
        {"method": "PUT"},
    ],
    ids=["path", "query", "authority", "scheme", "method"],
)
def test_tampered_target_or_method(partner: Ed25519PrivateKey, change: dict[str, str]) -> None:
    signed = sign_request(request(), private_key=partner, now=NOW)
    with pytest.raises(InvalidSignatureError):
        verify(replace(signed, **change), partner)  # type: ignore[arg-type]


def test_tampered_content_type(partner: Ed25519PrivateKey) -> None:
    signed = sign_request(request(), private_key=partner, now=NOW)
    with pytest.raises(InvalidSignatureError):
        verify(set_header(signed, "Content-Type", "text/csv"), partner)


@pytest.mark.parametrize("left_out", ["@method", "@target-uri", "content-digest", "content-type"])
def test_missing_required_component(partner: Ed25519PrivateKey, left_out: str) -> None:
    components = [
        c for c in ("@method", "@target-uri", "content-digest", "content-type") if c != left_out
    ]
    signed = sign_message(
        with_digest(request()),
        private_key=partner,
        components=components,
        created=NOW,
        nonce="n",
        tag=REQUEST_TAG,
    )
    with pytest.raises(MissingComponentError, match=left_out):
        verify(signed, partner)


def test_caller_can_require_more_components(partner: Ed25519PrivateKey) -> None:
    signed = sign_request(request(), private_key=partner, now=NOW)
    with pytest.raises(MissingComponentError, match="date"):
        verify(signed, partner, required_components=("@method", "date"))


def test_body_is_always_covered(partner: Ed25519PrivateKey) -> None:
    """Even a caller who forgets content-digest in required_components gets it checked."""
    signed = sign_message(
        with_digest(request()),
        private_key=partner,
        components=("@method", "@target-uri", "content-type"),
        created=NOW,
        nonce="n",
        tag=REQUEST_TAG,
    )
    with pytest.raises(MissingComponentError, match="content-digest"):
        verify(signed, partner, required_components=("@method",))


@pytest.mark.parametrize("parameter", ["created", "keyid", "nonce", "tag"])
def test_missing_signature_parameter(partner: Ed25519PrivateKey, parameter: str) -> None:
    signed = sign_request(request(), private_key=partner, now=NOW)
    sig_input = signed.header("Signature-Input") or ""
    stripped = re.sub(rf';{parameter}=("[^"]*"|\d+)', "", sig_input)
    assert stripped != sig_input
    with pytest.raises(MissingComponentError, match=parameter):
        verify(set_header(signed, "Signature-Input", stripped), partner)


def test_signature_for_another_purpose(partner: Ed25519PrivateKey) -> None:
    signed = sign_message(
        with_digest(request()),
        private_key=partner,
        components=("@method", "@target-uri", "content-digest", "content-type"),
        created=NOW,
        nonce="n",
        tag="some-other-app",
    )
    with pytest.raises(InvalidSignatureError, match="purpose"):
        verify(signed, partner)


@pytest.mark.parametrize(
    ("offset", "fresh"),
    [
        (0, True),
        (300, True),  # exactly max_age: the skew never lengthens it
        (301, False),
        (305, False),
        (86400, False),  # still inside the library's default of one day
        (-5, True),
        (-6, False),
    ],
)
def test_signature_age_window(partner: Ed25519PrivateKey, offset: int, fresh: bool) -> None:
    signed = sign_request(request(), private_key=partner, now=NOW)
    later = NOW + timedelta(seconds=offset)
    if fresh:
        assert verify_request(signed, resolve_key=registry(partner), now=later).created == NOW
    else:
        with pytest.raises(StaleSignatureError):
            verify(signed, partner, now=later)


def test_max_age_is_the_callers(partner: Ed25519PrivateKey) -> None:
    signed = sign_request(request(), private_key=partner, now=NOW)
    with pytest.raises(StaleSignatureError):
        verify(signed, partner, now=NOW + timedelta(seconds=66), max_age=60)


def test_naive_datetimes_are_refused(partner: Ed25519PrivateKey) -> None:
    with pytest.raises(ValueError, match="naive"):
        sign_request(request(), private_key=partner, now=datetime(2025, 3, 1))
    signed = sign_request(request(), private_key=partner, now=NOW)
    with pytest.raises(ValueError, match="naive"):
        verify(signed, partner, now=datetime(2025, 3, 1))


def test_two_signatures_are_refused(partner: Ed25519PrivateKey) -> None:
    signed = sign_request(request(), private_key=partner, now=NOW)
    doubled = set_header(
        signed, "Signature-Input", f'{signed.header("Signature-Input")}, sig2=("@method")'
    )
    doubled = set_header(doubled, "Signature", f"{signed.header('Signature')}, sig2=:AAAA:")
    with pytest.raises(InvalidSignatureError):
        verify(doubled, partner)


# -- responses ----------------------------------------------------------------------------


def exchange_once(
    partner: Ed25519PrivateKey, node: Ed25519PrivateKey, body: bytes = b'{"cells": []}'
) -> ResponseMessage:
    signed_request = sign_request(request(), private_key=partner, now=NOW)
    verify_request(signed_request, resolve_key=registry(partner), now=NOW)
    answer = ResponseMessage(200, (("content-type", "application/json"),), body, signed_request)
    return sign_response(answer, private_key=node, now=NOW)


def test_response_round_trip(partner: Ed25519PrivateKey, node: Ed25519PrivateKey) -> None:
    signed = exchange_once(partner, node)
    verified = verify_response(signed, resolve_key=registry(node), now=NOW)
    assert verified.key_id == key_id(node.public_key())
    assert {'"@method";req', '"@target-uri";req', '"signature";req;key="sig1"'} <= set(
        verified.components
    )
    assert {'"@status"', '"content-digest"', '"content-type"'} <= set(verified.components)


def test_response_signature_is_not_a_request_signature(
    partner: Ed25519PrivateKey, node: Ed25519PrivateKey
) -> None:
    signed = exchange_once(partner, node)
    as_request = replace(signed.request, headers=signed.headers, body=signed.body)
    with pytest.raises(SignatureError):
        verify_request(as_request, resolve_key=registry(node), now=NOW)


@pytest.mark.parametrize(
    ("tamper", "error"),
    [
        (lambda r: replace(r, status=500), InvalidSignatureError),
        (lambda r: replace(r, body=b'{"cells": [1]}'), DigestMismatchError),
        (lambda r: replace(r, request=replace(r.request, url=URL + "&x=1")), InvalidSignatureError),
        (lambda r: replace(r, request=replace(r.request, method="GET")), InvalidSignatureError),
    ],
    ids=["status", "body", "request-target", "request-method"],
)
def test_tampered_response(
    partner: Ed25519PrivateKey,
    node: Ed25519PrivateKey,
    tamper: Callable[[ResponseMessage], ResponseMessage],
    error: type[SignatureError],
) -> None:
    with pytest.raises(error):
        verify_response(tamper(exchange_once(partner, node)), resolve_key=registry(node), now=NOW)


def test_response_to_another_request(partner: Ed25519PrivateKey, node: Ed25519PrivateKey) -> None:
    """Same method and URL, but a different signed request: the answer must not fit."""
    answer = exchange_once(partner, node)
    other = sign_request(request(), private_key=partner, now=NOW)
    with pytest.raises(InvalidSignatureError):
        verify_response(replace(answer, request=other), resolve_key=registry(node), now=NOW)


def test_response_from_a_node_we_did_not_ask(
    partner: Ed25519PrivateKey, node: Ed25519PrivateKey
) -> None:
    impostor = Ed25519PrivateKey.generate()
    with pytest.raises(UnknownKeyError):
        verify_response(exchange_once(partner, impostor), resolve_key=registry(node), now=NOW)


def test_unsigned_response(partner: Ed25519PrivateKey, node: Ed25519PrivateKey) -> None:
    answer = exchange_once(partner, node)
    bare = replace(answer, headers=(("content-type", "application/json"),))
    with pytest.raises(MissingSignatureError):
        verify_response(bare, resolve_key=registry(node), now=NOW)


def test_response_to_unsigned_request_cannot_be_signed(node: Ed25519PrivateKey) -> None:
    answer = ResponseMessage(401, (), b"", request())
    with pytest.raises(ValueError, match="cannot sign"):
        sign_response(answer, private_key=node, now=NOW)


# -- adapters: one node talking to another over httpx2 and Starlette -------------------------


def test_httpx2_adapters_round_trip(partner: Ed25519PrivateKey) -> None:
    outgoing = httpx2.Request(
        "POST", URL, headers={"content-type": "application/json"}, content=BODY
    )
    signed = sign_request(request_from_httpx2(outgoing), private_key=partner, now=NOW)
    sent = to_httpx2_request(signed)
    assert sent.headers["signature"] == signed.header("signature")
    verify_request(request_from_httpx2(sent), resolve_key=registry(partner), now=NOW)


def node_app(
    node: Ed25519PrivateKey, partner: Ed25519PrivateKey, public_base_url: str
) -> Starlette:
    async def pull(incoming: Request) -> Response:
        message = await request_from_starlette(incoming, public_base_url=public_base_url)
        try:
            verify_request(message, resolve_key=registry(partner), now=NOW)
        except SignatureError as exc:
            return Response(str(exc), status_code=401)
        answer = ResponseMessage(200, (("content-type", "application/json"),), b"{}", message)
        signed = sign_response(answer, private_key=node, now=NOW)
        return Response(signed.body, status_code=signed.status, headers=dict(signed.headers))

    return Starlette(routes=[Route("/v1/{rest:path}", pull, methods=["POST"])])


def test_two_nodes_over_starlette_and_httpx2(
    partner: Ed25519PrivateKey, node: Ed25519PrivateKey
) -> None:
    app = node_app(node, partner, "https://node-b.example")
    with TestClient(app, base_url="https://node-b.example") as client:
        outgoing = client.build_request(
            "POST", URL, content=BODY, headers={"content-type": "application/json"}
        )
        signed = sign_request(request_from_httpx2(outgoing), private_key=partner, now=NOW)
        response = client.send(to_httpx2_request(signed))
    assert response.status_code == 200, response.text
    received = ResponseMessage(
        response.status_code,
        tuple((n.decode("latin-1"), v.decode("latin-1")) for n, v in response.headers.raw),
        response.read(),
        request_from_httpx2(response.request),
    )
    verified = verify_response(received, resolve_key=registry(node), now=NOW)
    assert verified.key_id == key_id(node.public_key())


@pytest.mark.parametrize(
    ("base", "path"),
    [
        ("https://node-b.example", "/v1/schemas/weekly%20epi%2Fv2?x=a%20b&y=%C3%A9"),
        ("https://node-b.example/exchange/", "/exchange/v1/pull"),  # a proxy strips /exchange
    ],
)
def test_starlette_sees_the_path_as_sent(
    partner: Ed25519PrivateKey, node: Ed25519PrivateKey, base: str, path: str
) -> None:
    app = node_app(node, partner, base)
    with TestClient(app, base_url="https://node-b.example") as client:
        signed = sign_request(
            request(url="https://node-b.example" + path), private_key=partner, now=NOW
        )
        proxied = to_httpx2_request(replace(signed, url=signed.url.replace("/exchange", "")))
        response = client.send(proxied)
    assert response.status_code == 200, response.text


def test_request_for_one_node_is_refused_by_another(
    partner: Ed25519PrivateKey, node: Ed25519PrivateKey
) -> None:
    """Node C judges the target URI by its own public URL, whatever the Host header says."""
    app = node_app(node, partner, "https://node-c.example")
    with TestClient(app, base_url="https://node-b.example") as client:
        signed = sign_request(request(), private_key=partner, now=NOW)
        response = client.send(to_httpx2_request(signed))
    assert response.status_code == 401
    assert response.text == "the signature is malformed or does not verify"


# -- fuzzing: verification never fails with anything but our errors ---------------------------

FUZZ_PARTNER = Ed25519PrivateKey.generate()
FUZZ_SIGNED = sign_request(request(), private_key=FUZZ_PARTNER, now=NOW)
FUZZ_KEYID = key_id(FUZZ_PARTNER.public_key())
PROFILE = ['"@method"', '"@target-uri"', '"content-digest"', '"content-type"']
VALID_PARAMETERS = [
    f"created={int(NOW.timestamp())}",
    f'keyid="{FUZZ_KEYID}"',
    'nonce="abc"',
    f'tag="{REQUEST_TAG}"',
]

component = st.sampled_from(
    [
        *PROFILE,
        '"@path"',
        '"@query"',
        '"@status"',
        '"@query-param";name="schema"',
        '"@query-param"',
        '"@unknown"',
        '"@method";req',
        '"content-digest";sf',
        '"content-digest";key="sha-256"',
        '"content-type";bs',
        '"content-type";key="x"',
        '"signature";key="sig1"',
        '"missing-header"',
        '"Content-Type"',
        "token",
        "1",
    ]
)
parameter = st.one_of(
    st.sampled_from(VALID_PARAMETERS),
    st.builds("created={}".format, st.integers(-(10**15), 10**15)),
    st.builds("created={}".format, st.integers(-400, 400).map(int(NOW.timestamp()).__add__)),
    st.builds("expires={}".format, st.integers(-400, 400).map(int(NOW.timestamp()).__add__)),
    st.builds('keyid="{}"'.format, st.sampled_from(["", "x"])),
    st.sampled_from(['alg="ed25519"', 'alg="hmac-sha256"', "created=1.5", "keyid=?1", "other=1"]),
)
signature_input = st.builds(
    lambda label, comps, params: f"{label}=({' '.join(comps)})" + "".join(f";{p}" for p in params),
    st.sampled_from(["sig1", "x"]),
    st.one_of(st.just(PROFILE), st.lists(component, max_size=6)),
    st.one_of(st.just(VALID_PARAMETERS), st.lists(parameter, max_size=6)),
)
field_value = st.one_of(
    signature_input,
    st.builds(lambda b: f"sig1=:{base64.b64encode(b).decode()}:", st.binary(max_size=80)),
    st.sampled_from([content_digest(BODY), content_digest(BODY, "sha-512"), "application/json"]),
    st.text(max_size=40),
    st.text(alphabet=st.characters(max_codepoint=255), max_size=40),
)
field_name = st.one_of(
    st.sampled_from(
        ["Signature-Input", "Signature", "Content-Digest", "Content-Type", "signature"]
    ),
    st.text(max_size=12),
)
mutation = st.one_of(
    st.tuples(st.just("set"), st.just("Signature-Input"), signature_input),
    st.tuples(st.just("set"), field_name, st.one_of(st.none(), field_value)),
    st.tuples(st.just("add"), field_name, field_value),
    st.tuples(st.just("method"), st.one_of(st.sampled_from(["GET", "post"]), st.text(max_size=8))),
    st.tuples(st.just("url"), st.one_of(st.text(max_size=40), st.just("https://[::1"))),
    st.tuples(st.just("body"), st.binary(max_size=64)),
)


def mutate(message: RequestMessage, change: tuple[object, ...]) -> RequestMessage:
    match change:
        case ("set", str(name), value):
            return set_header(message, name, value if isinstance(value, str) else None)
        case ("add", str(name), str(value)):
            return replace(message, headers=(*message.headers, (name, value)))
        case ("method", str(method)):
            return replace(message, method=method)
        case ("url", str(url)):
            return replace(message, url=url)
        case ("body", bytes(body)):
            return replace(message, body=body)
    raise AssertionError(change)


def covered_parts(message: RequestMessage) -> tuple[object, ...]:
    return (message.method, message.url, message.body, message.header("content-type"))


@settings(max_examples=500, deadline=None)
@given(st.lists(mutation, max_size=3))
def test_verify_request_fails_only_with_signature_errors(changes: list[tuple[object, ...]]) -> None:
    message = FUZZ_SIGNED
    for change in changes:
        message = mutate(message, change)
    try:
        verified = verify_request(message, resolve_key=registry(FUZZ_PARTNER), now=NOW)
    except SignatureError as exc:
        assert str(exc)
    else:  # whatever changed, nothing that the signature covers did
        assert covered_parts(message) == covered_parts(FUZZ_SIGNED)
        assert verified.key_id == FUZZ_KEYID


@settings(max_examples=200, deadline=None)
@given(
    status=st.integers(min_value=-1, max_value=1000),
    headers=st.lists(st.tuples(field_name, field_value), max_size=5),
    body=st.binary(max_size=32),
)
def test_verify_response_fails_only_with_signature_errors(
    status: int, headers: list[tuple[str, str]], body: bytes
) -> None:
    message = ResponseMessage(status, tuple(headers), body, FUZZ_SIGNED)
    with pytest.raises(SignatureError):
        verify_response(message, resolve_key=registry(FUZZ_PARTNER), now=NOW)
