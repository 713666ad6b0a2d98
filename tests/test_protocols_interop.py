"""The crisis protocols' signed routes, asked and checked by the independent RFC 9421 code.

Notices and subscriptions reuse the release path's signatures; here a partner signs by the
RFC's own reading (``tests.rfc9421_independent``, which shares no code with ours) and
verifies each answer the same way, so a route that signed the wrong bytes, or left out a
component of the profile, fails here even though our own verifier agrees with our signer.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import stamina

from exchange.clients.pulling import pull
from nodes.identity import load_current
from tests import rfc9421_independent as rfc
from tests.federation import Member, federation, now, query
from tests.test_federation_interop import REQUEST, _kid, _partner_key, _send
from tests.test_notices_federation import correct


@pytest.fixture(autouse=True)
def no_backoff() -> Iterator[None]:
    with stamina.set_testing(True, attempts=10, cap=True):
        yield


@pytest.fixture
def pair(stack: ExitStack, tmp_path: Path, database_urls: Iterator[str]) -> dict[str, Member]:
    return federation(stack, tmp_path, database_urls, ("XA", "XB"))


def _ask(provider: Member, partner: Member, path: str, body: dict[str, Any]) -> Any:
    """POST ``body`` to ``path`` signed by hand, and the answer verified by hand."""
    raw = json.dumps(body).encode()
    fields = (("Content-Type", "application/json"), ("Content-Digest", rfc.content_digest(raw)))
    key = _partner_key(partner)
    params: list[rfc.Param] = [
        ("created", int(now().timestamp())),
        ("keyid", _kid(key.public_key())),
        ("nonce", secrets.token_urlsafe(16)),
        ("alg", "ed25519"),
        ("tag", "crisis-exchange/request"),
    ]
    message = rfc.Message("POST", f"{provider.url}{path}", fields, raw)
    signed = rfc.sign(message, key, label="sig1", components=REQUEST, params=params)
    answer, response = _send(provider, signed)
    assert answer.status_code == 200, answer.text
    verified = rfc.verify(response, load_current(provider.settings.keys_dir).public_key)
    for component in ("@status", "content-digest", "content-type"):
        assert rfc.Component(component) in verified.components
    assert rfc.Component("signature", req=True, key="sig1") in verified.components
    assert response.field("content-digest") == rfc.content_digest(response.body)
    return json.loads(response.body)


def test_a_correction_notice_is_signed_as_the_profile_says(pair: dict[str, Member]) -> None:
    xa, xb = pair["XA"], pair["XB"]
    pulled = pull(xb.node, xb.client_to(xa), query("area:adm1", "week"))
    correct(xa, pulled.release["query"]["until"])
    document = _ask(xa, xb, "/v1/notices", {"from": 0})
    (notice,) = document["notices"]
    assert notice["release_ids"] == [pulled.release["release_id"]]
    assert document["recipient"]["id"] == "XB"


def test_a_subscription_and_its_periods_are_signed_as_the_profile_says(
    pair: dict[str, Member],
) -> None:
    xa, xb = pair["XA"], pair["XB"]
    asked = query().model_copy(update={"until": None}).model_dump(mode="json", exclude_none=True)
    made = _ask(xa, xb, "/v1/subscriptions", {"cadence": "month", "query": asked})
    subscription = made["subscription"]
    period = subscription["due"][0]
    document = _ask(xa, xb, f"/v1/subscriptions/{subscription['id']}/periods/{period}", {})
    assert document["type"] == "crisis-exchange/release"
    assert document["release"]["partner_id"] == "XB"
    listed = _ask(xa, xb, "/v1/subscriptions/list", {})
    assert [s["id"] for s in listed["subscriptions"]] == [subscription["id"]]
