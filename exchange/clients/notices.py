"""Fetching a peer's correction notices: signed request, verified answer, evidence kept.

Exactly the release path's checks (``exchange.clients.pulling``): the request is signed
with our current key (our previous one while in grace, if the peer does not know the new
one yet), the answer must verify against a key we trust for that very peer (an unknown key
makes us fetch its descriptor and accept endorsed keys, then check again), and the
document must say it is from that peer and for this node. Only then are the notices kept,
each with the exchange's bytes so ``reverify`` can check it again later, and the received
releases they name marked superseded. Pages are followed until the peer says no more.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from exchange.clients.peer import Exchange, PeerClient, PeerProtocolError
from exchange.clients.pulling import kept_exchange, signed_exchange, verify_kept
from exchange.signing.signatures import (
    VerifiedSignature,
)
from nodes import received_notices
from nodes.node import Node

NOTICES_PATH = "/v1/notices"
NOTICES_TYPE = "crisis-exchange/notices"
#: A peer that keeps saying "more" is not followed for ever.
MAX_PAGES = 100


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class FetchResult:
    peer_id: str
    fetched: int  # notices the peer sent
    stored: list[int]  # ids of those new to us (received_notices)


def _valid_notice(notice: Any) -> bool:
    return (
        isinstance(notice, dict)
        and isinstance(notice.get("notice_id"), int)
        and isinstance(notice.get("schema"), str)
        and isinstance(notice.get("release_ids"), list)
        and all(isinstance(i, int) for i in notice["release_ids"])
        and isinstance(notice.get("weeks"), list)
    )


def _notices_of(client: PeerClient, exchange: Exchange, node_id: str) -> dict[str, Any]:
    try:
        document = json.loads(exchange.response.body)
        ok = (
            document.get("type") == NOTICES_TYPE
            and document["provider"]["id"] == client.peer_id
            and document["recipient"]["id"] == node_id
            and isinstance(document["more"], bool)
            and all(_valid_notice(n) for n in document["notices"])
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise PeerProtocolError(
            client.peer_id, exchange.request.url, "signed an answer that is not its notices for us"
        )
    checked: dict[str, Any] = document
    return checked


def _page(
    node: Node, client: PeerClient, after: int, now: datetime
) -> tuple[dict[str, Any], Exchange, VerifiedSignature]:
    body = json.dumps({"from": after}).encode()
    exchange, signature = signed_exchange(node, client, NOTICES_PATH, body, now)
    return _notices_of(client, exchange, node.settings.node_id), exchange, signature


def fetch(
    node: Node, client: PeerClient, *, after: int = 0, clock: Callable[[], datetime] = _now
) -> FetchResult:
    """Fetch ``client``'s peer's notices for us after ``after``; verify, keep, mark.

    Raises a PeerError as ``pulling.pull`` does (nothing of a page that fails is stored).
    """
    fetched: int = 0
    stored: list[int] = []
    for _page_number in range(MAX_PAGES):
        document, exchange, signature = _page(node, client, after, clock())
        page = document["notices"]
        fetched += len(page)
        request, response = kept_exchange(exchange)
        stored += received_notices.store(
            node.engine,
            peer_id=client.peer_id,
            notices=page,
            key_id=signature.key_id,
            request=request,
            response=response,
            now=clock(),
        )
        if not document["more"] or not page:
            break
        after = max(n["notice_id"] for n in page)
    return FetchResult(client.peer_id, fetched, stored)


def reverify(node: Node, stored: received_notices.ReceivedNotice) -> VerifiedSignature:
    """Check a kept notice's signature again, over the stored bytes, as of its receipt,
    and that the signed body still holds the notice as kept. Raises SignatureError
    (UnknownKeyError if the key is no longer registered) or ValueError."""
    signature = verify_kept(
        node,
        peer_id=stored.peer_id,
        key_id=stored.key_id,
        request=stored.request,
        response=stored.response,
        received_at=stored.received_at,
    ).signature
    signed = json.loads(stored.response.body).get("notices", [])
    if stored.document not in signed:
        raise ValueError(f"the signed answer does not hold notice {stored.notice_id} as kept")
    return signature
