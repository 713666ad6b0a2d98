"""The pulling side: ask a peer for a release, check who answered, keep the evidence.

A release is stored only once its response signature verified against a key we trust for
that very peer, and only if the document says it is from that peer and for this node. A
peer that rotated its key is followed automatically: an answer signed by an unknown key
makes us fetch the peer's descriptor, accept keys endorsed by a key we trust, and check
the same answer again. If the peer does not know our newest key yet, we sign once more
with our previous key while it is in its grace period.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel

from exchange.clients.peer import (
    DEFAULT_TIMEOUT,
    Exchange,
    PeerClient,
    PeerError,
    PeerKeyUnknownError,
    PeerProtocolError,
)
from exchange.signing import witnessing
from exchange.signing.signatures import (
    RequestMessage,
    ResponseMessage,
    UnknownKeyError,
    VerifiedSignature,
    verify_response,
)
from nodes import keys, peers
from nodes.audit import log as audit_log
from nodes.audit.witness import WitnessResult
from nodes.database import reading, writing
from nodes.descriptor import KeyUpdate, trust_endorsed_keys
from nodes.node import Node
from nodes.releases import received

RELEASES_PATH = "/v1/releases"
DOCUMENT_TYPE = "crisis-exchange/release"


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class PullResult:
    peer_id: str
    received_id: int
    key_id: str
    cached: bool
    document: dict[str, Any]
    witness: WitnessResult | None = None  # our verdict on the peer's audit checkpoint

    @property
    def release(self) -> dict[str, Any]:
        inner: dict[str, Any] = self.document["release"]
        return inner


@dataclass(frozen=True)
class Reverified:
    """A stored release whose signature verified again, and the peer key that made it."""

    signature: VerifiedSignature
    key: peers.PeerKey


def reverify(node: Node, stored: received.ReceivedRelease) -> Reverified:
    """Check a stored release's signature again, over the stored bytes, as of its receipt.

    The stored request and response are the evidence; this shows they are still what the
    peer signed. The key is the one that signed at the time, even if since revoked or the
    peer removed (a later revocation does not undo a signature made before it; the caller
    may say the key was revoked). Raises SignatureError: UnknownKeyError when the key is
    no longer registered at all, another kind when the bytes no longer verify.
    """
    return verify_kept(
        node,
        peer_id=stored.peer_id,
        key_id=stored.key_id,
        request=stored.request,
        response=stored.response,
        received_at=stored.received_at,
    )


def verify_kept(
    node: Node,
    *,
    peer_id: str,
    key_id: str,
    request: received.RawRequest,
    response: received.RawResponse,
    received_at: datetime,
) -> Reverified:
    """`reverify` for any signed exchange kept as received (a release, a notice)."""
    with reading(node.engine) as conn:
        peer = peers.get(conn, peer_id, include_removed=True)
    key = next((k for k in peer.keys if k.key_id == key_id), None)
    if key is None:
        raise UnknownKeyError(f"key {key_id} of {peer_id} is not registered")
    sent = RequestMessage(request.method, request.url, request.headers, request.body)
    answer = ResponseMessage(response.status, response.headers, response.body, sent)
    signature = verify_response(
        answer,
        resolve_key=lambda kid: key.key if kid == key.key_id else None,
        now=received_at,
        max_age=node.settings.signature_max_age_seconds,
    )
    return Reverified(signature, key)


def peer_client(
    node: Node,
    http: httpx2.Client,
    peer: peers.Peer,
    *,
    timeout: httpx2.Timeout = DEFAULT_TIMEOUT,
    attempts: int = 3,
    retry_timeout: float = 30.0,
    clock: Callable[[], datetime] = _now,
) -> PeerClient:
    """A client for ``peer`` that trusts only that peer's usable keys, read fresh each time."""

    def resolve(kid: str) -> Ed25519PublicKey | None:
        with reading(node.engine) as conn:
            found = peers.resolve(conn, kid, now=clock())
        return found[1] if found is not None and found[0] == peer.id else None

    return PeerClient(
        http,
        peer_id=peer.id,
        base_url=peer.url,
        resolve_key=resolve,
        timeout=timeout,
        attempts=attempts,
        retry_timeout=retry_timeout,
        max_age=node.settings.signature_max_age_seconds,
        clock=clock,
    )


def refresh_keys(node: Node, client: PeerClient, *, now: datetime) -> KeyUpdate:
    """Fetch the peer's descriptor and accept the keys a trusted key endorsed (audited)."""
    descriptor = client.descriptor()
    with writing(node.engine) as conn:
        update = trust_endorsed_keys(conn, peer_id=client.peer_id, descriptor=descriptor, now=now)
        if update.added:
            audit_log.append(
                conn,
                actor="node",
                role="node",
                action="peer.key.add",
                resource=f"partner:{client.peer_id}",
                outcome="allowed",
                reason=f"accepted endorsed keys {', '.join(update.added)} from its descriptor",
                partner=client.peer_id,
                now=now,
            )
    return update


def is_unsigned(exchange: Exchange) -> bool:
    return exchange.response.header("signature") is None


def signed_exchange(
    node: Node, client: PeerClient, path: str, body: bytes, now: datetime
) -> tuple[Exchange, VerifiedSignature]:
    """POST ``body`` to the peer's ``path`` signed with our key (again with our previous key
    while the peer does not know the newest yet), and verify the answer (following the
    peer's key rotation). Raises PeerRefusedError for a refusal, signed or not, and
    PeerSignatureError for an answer whose signature does not verify."""
    exchange = client.post_signed(path, body, key=keys.current_key(node.settings.keys_dir).get())
    if (
        exchange.response.status == 401
        and is_unsigned(exchange)
        and exchange.problem().get("signature_error") == "unknown_key"
    ):
        previous = keys.previous_key(node.settings.keys_dir, now=now)
        if previous is not None:
            exchange = client.post_signed(path, body, key=previous)
    if is_unsigned(exchange) and exchange.response.status != 200:
        raise client.refusal(exchange, signed=False)
    signature = verify_answer(node, client, exchange, now)
    if exchange.response.status != 200:
        raise client.refusal(exchange, signed=True)
    return exchange, signature


def verify_answer(
    node: Node, client: PeerClient, exchange: Exchange, now: datetime
) -> VerifiedSignature:
    try:
        return client.verify(exchange)
    except PeerKeyUnknownError as unknown:
        try:
            added = refresh_keys(node, client, now=now).added
        except PeerError:
            added = []  # no descriptor to learn from: the answer stays unverified
        if not added:
            raise unknown from None
    return client.verify(exchange)


def release_document_of(client: PeerClient, exchange: Exchange, node_id: str) -> dict[str, Any]:
    url = exchange.request.url
    try:
        document = json.loads(exchange.response.body)
        ok = (
            document.get("type") == DOCUMENT_TYPE
            and document["provider"]["id"] == client.peer_id
            and document["recipient"]["id"] == node_id
            and isinstance(document["release"]["release_id"], int | str)
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise PeerProtocolError(
            client.peer_id, url, "signed an answer that is not a release from it for us"
        )
    checked: dict[str, Any] = document
    return checked


def pull(
    node: Node,
    client: PeerClient,
    query: BaseModel,
    *,
    clock: Callable[[], datetime] = _now,
) -> PullResult:
    """Ask ``client``'s peer for the release ``query`` describes; verify, store, return it.

    Raises a PeerError: PeerRefusedError (with the peer's problem: denied, budget
    exhausted...), PeerSignatureError (nothing stored), PeerUnreachableError,
    PeerProtocolError.
    """
    now = clock()
    since = witnessing.last_size(node, client.peer_id)
    path = f"{RELEASES_PATH}?{witnessing.SINCE}={since}"
    exchange, signature = signed_exchange(node, client, path, query.model_dump_json().encode(), now)
    return keep_release(node, client, exchange, signature, now=clock())


def keep_release(
    node: Node,
    client: PeerClient,
    exchange: Exchange,
    signature: VerifiedSignature,
    *,
    now: datetime,
) -> PullResult:
    """Store a verified release answer (a pull's, a subscription period's) with its exact
    signed exchange, and witness the peer's checkpoint it carries."""
    document = release_document_of(client, exchange, node.settings.node_id)
    release = document["release"]
    request, response = kept_exchange(exchange)
    received_id = received.store(
        node.engine,
        peer_id=client.peer_id,
        release_id=str(release["release_id"]),
        schema_id=str(release.get("schema", "")),
        key_id=signature.key_id,
        cached=bool(release.get("cached", False)),
        request=request,
        response=response,
        now=now,
    )
    return PullResult(
        peer_id=client.peer_id,
        received_id=received_id,
        key_id=signature.key_id,
        cached=bool(release.get("cached", False)),
        document=document,
        witness=witnessing.record(node, client.peer_id, document, now=now),
    )


def kept_exchange(exchange: Exchange) -> tuple[received.RawRequest, received.RawResponse]:
    """A signed exchange as the node keeps it, to verify it again later."""
    sent, answer = exchange.request, exchange.response
    return (
        received.RawRequest(sent.method, sent.url, sent.headers, sent.body),
        received.RawResponse(answer.status, answer.headers, answer.body),
    )
