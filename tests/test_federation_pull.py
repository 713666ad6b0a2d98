"""Two and three nodes in one process: pulls, policies, budgets, the cache, the evidence kept,
key rotation, revocation, a peer that is down and a peer whose signature is bad."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import httpx2
import pytest
import stamina
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from exchange.clients.peer import (
    PeerKeyUnknownError,
    PeerRefusedError,
    PeerSignatureError,
    PeerUnreachableError,
)
from exchange.clients.pulling import peer_client, pull, refresh_keys
from exchange.signing.signatures import (
    RequestMessage,
    ResponseMessage,
    SignatureError,
    VerifiedSignature,
    request_from_starlette,
    sign_response,
    verify_response,
)
from nodes import keys, peers
from nodes.audit import checkpoint_store
from nodes.identity import load_current
from nodes.releases import received
from tests.federation import (
    Member,
    federation,
    now,
    query,
    weeks,
)
from tests.servers import refused_port


@pytest.fixture(autouse=True)
def no_backoff() -> Iterator[None]:
    with stamina.set_testing(True, attempts=10, cap=True):
        yield


@pytest.fixture
def pair(stack: ExitStack, tmp_path: Path, database_urls: Iterator[str]) -> dict[str, Member]:
    return federation(stack, tmp_path, database_urls, ("XA", "XB"))


def reverify(stored: received.ReceivedRelease, public_key: Ed25519PublicKey) -> VerifiedSignature:
    """Check a stored release's signature again, as of when it was received: the stored
    request and response are the evidence, and the signature module checks them."""
    request = RequestMessage(
        stored.request.method, stored.request.url, stored.request.headers, stored.request.body
    )
    response = ResponseMessage(
        stored.response.status, stored.response.headers, stored.response.body, request
    )
    return verify_response(
        response,
        resolve_key=lambda kid: public_key if kid == stored.key_id else None,
        now=stored.received_at,
        max_age=3600,
    )


def test_a_pull_is_signed_verified_stored_and_accurate(pair: dict[str, Member]) -> None:
    xa, xb = pair["XA"], pair["XB"]
    result = pull(xb.node, xb.client_to(xa), query("area:adm1", "week"))
    release = result.release
    assert result.document["provider"]["id"] == "XA"
    assert result.document["recipient"] == {
        "id": "XB",
        "key_id": load_current(xb.settings.keys_dir).kid,
    }
    assert result.key_id == load_current(xa.settings.keys_dir).kid
    assert {cell["area"] for cell in release["cells"]} == {f"XA-P{p}" for p in range(1, 5)}
    assert len(release["cells"]) == 4 * 16
    assert release["epsilon_spent"] == 1.0
    assert not result.cached
    assert release["policy_hash"].startswith("sha256:")
    assert all(cell["cases"]["accuracy"] > 0 for cell in release["cells"])
    # The evidence: the exchange as received, whose signature still verifies.
    stored = received.get(xb.node.engine, result.received_id)
    assert stored.document == result.document
    assert reverify(stored, load_current(xa.settings.keys_dir).public_key).key_id == result.key_id
    forged = stored.response.body.replace(b'"epsilon_spent":1', b'"epsilon_spent":0')
    assert forged != stored.response.body
    tampered = received.ReceivedRelease(
        **{
            **stored.__dict__,
            "response": received.RawResponse(200, stored.response.headers, forged),
        }
    )
    with pytest.raises(SignatureError):
        reverify(tampered, load_current(xa.settings.keys_dir).public_key)


def test_a_repeat_is_served_from_the_cache_and_costs_nothing(pair: dict[str, Member]) -> None:
    xa, xb = pair["XA"], pair["XB"]
    first = pull(xb.node, xb.client_to(xa), query("area:adm1", "week"))
    spent = xa.counts()["spent_micro"]
    again = pull(xb.node, xb.client_to(xa), query("area:adm1", "week"))
    assert again.cached
    assert again.release["epsilon_spent"] == 0
    assert again.release["release_id"] == first.release["release_id"]
    assert again.release["cells"] == first.release["cells"]
    assert xa.counts()["spent_micro"] == spent
    assert xb.counts()["received"] == 2  # each receipt is evidence of its own


def test_a_denial_is_signed_and_gives_the_rules_reasons(pair: dict[str, Member]) -> None:
    xa, xb = pair["XA"], pair["XB"]
    before = xa.counts()
    with pytest.raises(PeerRefusedError) as caught:
        pull(xb.node, xb.client_to(xa), query("area:adm2", "week"))
    refused = caught.value
    assert refused.status == 403
    assert refused.signed
    assert "admin level 1" in refused.problem["reasons"][0]
    assert "peer XA at http://xa.test/v1/releases: refused with 403" in str(refused)
    after = xa.counts()
    assert after["spent_micro"] == before["spent_micro"]
    assert after["releases"] == before["releases"]
    assert xb.counts()["received"] == 0


def test_a_red_line_never_leaves(pair: dict[str, Member]) -> None:
    xa, xb = pair["XA"], pair["XB"]
    with pytest.raises(PeerRefusedError) as caught:
        pull(xb.node, xb.client_to(xa), query("area:adm1", measures=("deaths",)))
    assert caught.value.status == 403
    assert "no-deaths" in json.dumps(caught.value.problem)


def test_an_exhausted_budget_is_a_signed_429_with_what_is_left(pair: dict[str, Member]) -> None:
    xa, xb = pair["XA"], pair["XB"]
    found = query("area:adm1", "week")
    for first in range(8):  # the agreement's budget is 8, at 1.0 per (distinct) release
        pull(xb.node, xb.client_to(xa), found.model_copy(update={"since": weeks()[first]}))
    spent = xa.counts()["spent_micro"]
    with pytest.raises(PeerRefusedError) as caught:
        pull(xb.node, xb.client_to(xa), query("area:adm0", "week"))
    assert caught.value.status == 429
    assert caught.value.signed
    assert caught.value.problem["budget_left"] == 0
    assert xa.counts()["spent_micro"] == spent


def test_three_nodes_each_pull_from_the_others(
    stack: ExitStack, tmp_path: Path, database_urls: Iterator[str]
) -> None:
    members = federation(stack, tmp_path, database_urls, ("XA", "XB", "XC"))
    for puller in members.values():
        close = members[puller.nation.far_partner]  # puller is that nation's close partner
        far = members[puller.nation.close_partner]  # puller is that nation's far partner
        detailed = pull(puller.node, puller.client_to(close), query("area:adm1", "week"))
        assert {c["area"] for c in detailed.release["cells"]} == {
            f"{close.id}-P{p}" for p in range(1, 5)
        }
        national = pull(puller.node, puller.client_to(far), query("area:adm0", "week"))
        assert {c["area"] for c in national.release["cells"]} == {far.id}
        with pytest.raises(PeerRefusedError, match="admin level 0"):
            pull(puller.node, puller.client_to(far), query("area:adm1", "week"))
    assert all(m.counts()["received"] == 2 for m in members.values())


# -- keys ----------------------------------------------------------------------------------


def test_a_peer_that_rotated_is_followed_through_its_endorsed_descriptor(
    pair: dict[str, Member],
) -> None:
    xa, xb = pair["XA"], pair["XB"]
    old_kid = load_current(xa.settings.keys_dir).kid
    new, _old = keys.rotate(xa.settings.keys_dir, node_id="XA", grace=timedelta(hours=1), now=now())
    result = pull(xb.node, xb.client_to(xa), query())
    assert result.key_id == new.kid  # XA signs with its new key at once, without restart
    known = {k.key_id: k for k in peers.get_peer(xb.node.engine, "XA").keys}
    assert known[new.kid].source == "endorsement"
    assert known[old_kid].valid_until is not None  # the end XA's old key signed


def test_our_rotation_falls_back_to_the_old_key_until_the_peer_refreshes(
    pair: dict[str, Member],
) -> None:
    xa, xb = pair["XA"], pair["XB"]
    old = load_current(xb.settings.keys_dir)
    new, _ = keys.rotate(xb.settings.keys_dir, node_id="XB", grace=timedelta(hours=1), now=now())
    first = pull(xb.node, xb.client_to(xa), query())
    assert first.document["recipient"]["key_id"] == old.kid  # XA knew only the old key
    refresh_keys(xa.node, xa.client_to(xb), now=now())
    second = pull(xb.node, xb.client_to(xa), query("area:adm1"))
    assert second.document["recipient"]["key_id"] == new.kid


def test_a_revoked_key_is_refused_at_once_and_costs_nothing(pair: dict[str, Member]) -> None:
    xa, xb = pair["XA"], pair["XB"]
    pull(xb.node, xb.client_to(xa), query())
    kid = load_current(xb.settings.keys_dir).kid
    peers.revoke_peer_key(xa.node.engine, peer_id="XB", kid=kid, now=now())
    before = xa.counts()
    with pytest.raises(PeerRefusedError) as caught:
        pull(xb.node, xb.client_to(xa), query("area:adm1"))
    assert caught.value.status == 401
    assert not caught.value.signed
    assert caught.value.problem["signature_error"] == "unknown_key"
    assert xa.counts() == before


def test_a_removed_peer_gets_nothing(pair: dict[str, Member]) -> None:
    xa, xb = pair["XA"], pair["XB"]
    peers.remove_peer(xa.node.engine, peer_id="XB", now=now())
    with pytest.raises(PeerRefusedError, match="401"):
        pull(xb.node, xb.client_to(xa), query())


# -- peers that fail -----------------------------------------------------------------------


def test_a_peer_that_is_down(pair: dict[str, Member]) -> None:
    xb = pair["XB"]
    with refused_port() as port, httpx2.Client() as http:
        moved = replace(peers.get_peer(xb.node.engine, "XA"), url=f"http://127.0.0.1:{port}")
        client = peer_client(xb.node, http, moved)
        with pytest.raises(PeerUnreachableError) as caught:
            pull(xb.node, client, query())
    assert f"peer XA at http://127.0.0.1:{port}/v1/releases: could not be reached" in str(
        caught.value
    )
    assert xb.counts()["received"] == 0


def _liar(answer_key: Ed25519PrivateKey, tamper: bool) -> Starlette:
    """A node that answers every release request with a signed, but wrong, answer."""

    async def releases(request: Request) -> Response:
        message = await request_from_starlette(request, public_base_url="http://xa.test")
        body = json.dumps({"type": "crisis-exchange/release", "release": {}}).encode()
        response = ResponseMessage(200, (("Content-Type", "application/json"),), body, message)
        signed = sign_response(response, private_key=answer_key, now=now())
        out = signed.body + b" " if tamper else signed.body
        return Response(out, headers=dict(signed.headers))

    return Starlette(routes=[Route("/v1/releases", releases, methods=["POST"])])


@pytest.mark.parametrize(
    ("honest_key", "tamper", "error"),
    [(False, False, PeerKeyUnknownError), (True, True, PeerSignatureError)],
)
def test_a_peer_answering_with_a_bad_signature_is_refused_and_nothing_stored(
    pair: dict[str, Member], honest_key: bool, tamper: bool, error: type[Exception]
) -> None:
    xa, xb = pair["XA"], pair["XB"]
    key = (
        load_current(xa.settings.keys_dir).private_key
        if honest_key
        else Ed25519PrivateKey.generate()
    )
    client = xb.client_to(xa)
    with TestClient(_liar(key, tamper), base_url="http://xa.test") as liar:
        client.http = liar
        with pytest.raises(error):
            pull(xb.node, client, query())
    assert xb.counts()["received"] == 0


def test_each_pull_witnesses_the_peers_audit_log(pair: dict[str, Member]) -> None:
    xa, xb = pair["XA"], pair["XB"]
    xa_key = load_current(xa.settings.keys_dir).private_key
    first_size = checkpoint_store.sign(xa.node.engine, xa_key, now=now()).checkpoint.tree_size
    first = pull(xb.node, xb.client_to(xa), query())
    assert first.witness is not None
    assert first.witness.verdict == "first"
    assert first.document["checkpoint"]
    assert first.document["consistency_proof"] is None
    grown = checkpoint_store.sign(xa.node.engine, xa_key, now=now()).checkpoint.tree_size
    assert grown > first_size  # the release itself was audited
    second = pull(xb.node, xb.client_to(xa), query("area:adm1"))
    assert second.document["consistency_proof"]["from"] == first_size
    assert second.witness is not None
    assert second.witness.verdict == "consistent"
