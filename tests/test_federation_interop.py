"""A node as a partner built from the RFCs and our docs sees it: no code of ours signs or
verifies here (``tests.rfc9421_independent`` and ``cryptography`` do), so the node is not
only checked against itself."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import http_sf
import httpx2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from exchange.api import releasing
from nodes import keys
from nodes.identity import load_current
from tests import rfc9421_independent as rfc
from tests.federation import Member, federation, now, query
from tests.test_signatures import VECTORS, rfc_key, rfc_request, sf_bytes, unwrap

URL = "http://xa.test/v1/releases"
FEDERATION_MD = Path(__file__).resolve().parents[1] / "docs" / "federation.md"
REQUEST = [rfc.Component(c) for c in ("@method", "@target-uri", "content-digest", "content-type")]


@pytest.fixture
def pair(stack: ExitStack, tmp_path: Path, database_urls: Iterator[str]) -> dict[str, Member]:
    return federation(stack, tmp_path, database_urls, ("XA", "XB"))


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _kid(public: Ed25519PublicKey) -> str:
    """The key id as docs/federation.md defines it: base64url SHA-256 of the raw key."""
    return _b64url(hashlib.sha256(_raw(public)).digest())


def _partner_key(member: Member) -> Ed25519PrivateKey:
    return load_current(member.settings.keys_dir).private_key


def _signed(
    key: Ed25519PrivateKey,
    *,
    label: str = "sig1",
    created: datetime | None = None,
    components: list[rfc.Component] = REQUEST,
    params: list[rfc.Param] | None = None,
) -> rfc.Message:
    """A release request signed as docs/federation.md's profile says, by our own hand."""
    body = query().model_dump_json().encode()
    fields = (("Content-Type", "application/json"), ("Content-Digest", rfc.content_digest(body)))
    message = rfc.Message("POST", URL, fields, body)
    if params is None:
        params = [
            ("created", int((created or now()).timestamp())),
            ("keyid", _kid(key.public_key())),
            ("nonce", secrets.token_urlsafe(16)),
            ("alg", "ed25519"),
            ("tag", "crisis-exchange/request"),
        ]
    return rfc.sign(message, key, label=label, components=components, params=params)


def _send(member: Member, message: rfc.Message) -> tuple[httpx2.Response, rfc.Message]:
    sent = httpx2.Request(
        message.method, message.url, headers=list(message.fields), content=message.body
    )
    answer = member.http.send(sent)
    fields = tuple((n.decode("latin-1"), v.decode("latin-1")) for n, v in answer.headers.raw)
    return answer, rfc.Message(
        fields=fields, body=answer.content, status=answer.status_code, request=message
    )


def test_the_independent_signer_reproduces_rfc9421_b26() -> None:
    """The helper is right before it judges the node: Appendix B.2.6, byte for byte."""
    request = rfc_request("TEST_REQUEST")
    message = rfc.Message(request.method, request.url, request.headers, request.body)
    components = [rfc.Component(c) for c in ("date", "@method", "@path", "@authority")]
    components += [rfc.Component("content-type"), rfc.Component("content-length")]
    params: list[rfc.Param] = [("created", 1618884473), ("keyid", "test-key-ed25519")]
    signed = rfc.sign(message, rfc_key(), label="sig-b26", components=components, params=params)
    expected = dict(line.split(": ", 1) for line in unwrap("B26_HDRS").strip("\n").split("\n"))
    assert signed.field("signature-input") == expected["Signature-Input"]
    assert signed.field("signature") == expected["Signature"]
    base = rfc.signature_base(message, components, rfc.signature_params(components, params))
    assert base.decode() == unwrap("B26_BASE").strip("\n")
    assert sf_bytes(expected["Signature"]) == rfc_key().sign(base)
    assert "B26_BASE" in VECTORS


# -- item 1: any label, and nothing charged unless the signed answer can be made -----------


@pytest.mark.parametrize("label", ["sig1", "partner-7", "x.b_3*"])
def test_a_request_under_any_label_is_answered_signed_and_bound_to_it(
    pair: dict[str, Member], label: str
) -> None:
    xa, xb = pair["XA"], pair["XB"]
    before = xa.counts()
    answer, response = _send(xa, _signed(_partner_key(xb), label=label))
    assert answer.status_code == 200, answer.text
    verified = rfc.verify(response, load_current(xa.settings.keys_dir).public_key)
    assert rfc.Component("signature", req=True, key=label) in verified.components
    for component in ("@status", "content-digest", "content-type"):
        assert rfc.Component(component) in verified.components
    assert rfc.Component("@target-uri", req=True) in verified.components
    assert 'tag="crisis-exchange/response"' in verified.params_text
    assert response.field("content-digest") == rfc.content_digest(response.body)
    assert xa.counts()["spent_micro"] == before["spent_micro"] + 2 * 1_000_000  # XB and global
    assert json.loads(response.body)["release"]["cached"] is False


def test_nothing_is_charged_or_recorded_when_the_answer_cannot_be_signed(
    pair: dict[str, Member], monkeypatch: pytest.MonkeyPatch
) -> None:
    xa, xb = pair["XA"], pair["XB"]

    def broken(*_args: object, **_kwargs: object) -> None:
        raise ValueError("cannot sign a response")

    monkeypatch.setattr(releasing, "sign_response", broken)
    before = xa.counts()
    with pytest.raises(ValueError, match="cannot sign"):
        _send(xa, _signed(_partner_key(xb), label="partner-7"))
    after = xa.counts()
    assert (after["spent_micro"], after["releases"]) == (before["spent_micro"], before["releases"])


# -- item 3: the freshness window is max_age, not max_age + skew ----------------------------


@pytest.mark.parametrize(
    ("offset", "status"),
    [(-295, 200), (-303, 401), (3, 200), (9, 401)],
)
def test_the_freshness_window_is_the_documented_300_seconds(
    pair: dict[str, Member], offset: int, status: int
) -> None:
    xa, xb = pair["XA"], pair["XB"]
    documented = FEDERATION_MD.read_text(encoding="utf-8")
    assert "`created` at most 300 s old" in documented
    assert "at most 5 s in the future" in documented
    created = now() + timedelta(seconds=offset)
    answer, _response = _send(xa, _signed(_partner_key(xb), created=created))
    assert answer.status_code == status, answer.text
    if status == 401:
        assert answer.json()["signature_error"] == "stale_signature"


# -- item 4: Accept-Signature asks only for what a signer can honour ------------------------


def test_accept_signature_can_be_honoured_as_written(pair: dict[str, Member]) -> None:
    """RFC 9421 §5.1: ``created``/``expires`` carry no value (generate one); every other
    parameter is a value to use. A bare ``nonce`` or ``keyid`` would mean ``?1``."""
    xa, xb = pair["XA"], pair["XB"]
    refused = xa.http.post(URL, content=b"{}", headers={"Content-Type": "application/json"})
    assert refused.status_code == 401
    requested = http_sf.parse(refused.headers["accept-signature"].encode(), tltype="dictionary")
    assert isinstance(requested, dict)
    assert len(requested) == 1
    label, (inner, params) = next(iter(requested.items()))
    for name, value in params.items():
        assert (value is True) == (name in ("created", "expires")), (name, value)
    assert "nonce" not in params
    assert "keyid" not in params
    problem = refused.json()
    assert {"created", "keyid", "nonce", "tag"} <= set(problem["required_parameters"])
    # Honour it: its components and values as written, plus what the signer generates.
    key = _partner_key(xb)
    generated: dict[str, Any] = {
        "created": int(now().timestamp()),
        "keyid": _kid(key.public_key()),
        "nonce": secrets.token_urlsafe(16),
    }
    honoured: list[rfc.Param] = [
        (name, generated[name] if value is True else value) for name, value in params.items()
    ]
    honoured += [(n, generated[n]) for n in problem["required_parameters"] if n not in params]
    components = [rfc.Component(str(item)) for item, _item_params in inner]
    answer, _response = _send(
        xa, _signed(key, label=str(label), components=components, params=honoured)
    )
    assert answer.status_code == 200, answer.text


# -- item 2: an endorsement verifies from the descriptor and the docs alone -----------------


def _documented_statement_fields() -> dict[str, str]:
    """The endorsement statement as docs/federation.md shows it (placeholders kept)."""
    text = FEDERATION_MD.read_text(encoding="utf-8")
    found = re.search(
        r'```json\n(\{"type":"crisis-exchange/key-endorsement/v1".*?\})\n```', text, re.S
    )
    assert found, "docs/federation.md must show the endorsement statement"
    documented: dict[str, str] = json.loads(found.group(1))
    return documented


def test_a_key_endorsement_verifies_from_the_descriptor_and_the_docs_alone(
    pair: dict[str, Member],
) -> None:
    xa = pair["XA"]
    keys.rotate(xa.settings.keys_dir, node_id="XA", grace=timedelta(days=7), now=now())
    descriptor = json.loads(xa.http.get("/.well-known/exchange-node").text)
    by_id = {k["key_id"]: k for k in descriptor["keys"]}
    new = next(k for k in descriptor["keys"] if k["endorsement"] is not None)
    endorsement = new["endorsement"]
    # Every field from the descriptor's own strings, as the docs say where each comes from.
    statement = {
        "type": "crisis-exchange/key-endorsement/v1",
        "node_id": descriptor["id"],
        "key_id": new["key_id"],
        "public_key": new["public_key"],
        "valid_from": new["valid_from"],
        "previous_key_id": endorsement["by"],
        "previous_valid_until": endorsement["previous_valid_until"],
    }
    documented = _documented_statement_fields()
    assert set(documented) == set(statement)
    assert documented["type"] == statement["type"]
    # RFC 8785 for an object of ASCII keys and string values: sorted keys, no whitespace.
    canonical = json.dumps(statement, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    endorser = Ed25519PublicKey.from_public_bytes(
        _b64url_decode(by_id[endorsement["by"]]["public_key"])
    )
    endorser.verify(_b64url_decode(endorsement["signature"]), canonical.encode())
    # One spelling of time everywhere a time is published: the old key's end is the same.
    assert by_id[endorsement["by"]]["valid_until"] == endorsement["previous_valid_until"]
    for text in (new["valid_from"], endorsement["previous_valid_until"]):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", text), text
