"""The subscribing side: subscribe at a peer, list, cancel, and sync every due period.

Every request is signed and every answer verified like a pull (``exchange.clients.pulling``);
a period's release is stored as a received release with its exact signed exchange, so
``exchange received verify`` checks it unchanged. ``sync`` is idempotent and safe to run
twice at once (cron, a systemd timer, ``exchange serve``): each period is claimed in our own
table (unique per peer, subscription and period) before it is fetched, so it is stored once;
a claim left by a sync that died is taken over after ``CLAIM_STALE``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx2
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from exchange.clients.peer import Exchange, PeerClient, PeerError
from exchange.clients.pulling import keep_release, peer_client, signed_exchange
from exchange.signing import witnessing
from exchange.signing.signatures import VerifiedSignature
from nodes import peers
from nodes.database import reading, writing
from nodes.node import Node
from nodes.subscription_tables import peer_subscription_periods, peer_subscriptions
from policies.query import ReleaseQuery

PATH = "/v1/subscriptions"
CLAIM_STALE = dt.timedelta(minutes=5)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _signed(
    node: Node, client: PeerClient, path: str, body: dict[str, Any], now: dt.datetime
) -> tuple[Exchange, VerifiedSignature]:
    """POST ``body`` signed, verify the answer; raises a PeerError."""
    return signed_exchange(node, client, path, json.dumps(body).encode(), now)


def _remember(node: Node, peer_id: str, doc: dict[str, Any], now: dt.datetime) -> None:
    """Keep what the peer says of our subscription (for ``subscriptions list``)."""
    forecast = doc.get("forecast") or {}
    values = {
        "cadence": str(doc["cadence"]),
        "query": json.dumps(doc["query"]),
        "ended_at": dt.datetime.fromisoformat(doc["ended_at"]) if doc.get("ended_at") else None,
        "end_reason": doc.get("end_reason"),
        "releases_left": forecast.get("releases_left"),
        "checked_at": now,
    }
    with writing(node.engine) as conn:
        upsert = postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert
        conn.execute(
            upsert(peer_subscriptions)
            .values(peer_id=peer_id, subscription_id=int(doc["id"]), created_at=now, **values)
            .on_conflict_do_update(index_elements=["peer_id", "subscription_id"], set_=values)
        )


def subscribe(
    node: Node, client: PeerClient, query: ReleaseQuery, cadence: str, *, now: dt.datetime
) -> dict[str, Any]:
    body = {"cadence": cadence, "query": query.model_dump(mode="json", exclude_none=True)}
    exchange, _sig = _signed(node, client, PATH, body, now)
    doc: dict[str, Any] = json.loads(exchange.response.body)["subscription"]
    _remember(node, client.peer_id, doc, now)
    return doc


def listing(node: Node, client: PeerClient, *, now: dt.datetime) -> list[dict[str, Any]]:
    exchange, _sig = _signed(node, client, f"{PATH}/list", {}, now)
    docs: list[dict[str, Any]] = json.loads(exchange.response.body)["subscriptions"]
    for doc in docs:
        _remember(node, client.peer_id, doc, now)
    return docs


def cancel(
    node: Node, client: PeerClient, subscription_id: int, *, now: dt.datetime
) -> dict[str, Any]:
    exchange, _sig = _signed(node, client, f"{PATH}/{subscription_id}/cancel", {}, now)
    doc: dict[str, Any] = json.loads(exchange.response.body)["subscription"]
    _remember(node, client.peer_id, doc, now)
    return doc


def _claim(node: Node, peer_id: str, sub_id: int, period: str, now: dt.datetime) -> bool:
    key = (
        peer_subscription_periods.c.peer_id == peer_id,
        peer_subscription_periods.c.subscription_id == sub_id,
        peer_subscription_periods.c.period == period,
    )
    with writing(node.engine) as conn:
        upsert = postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert
        claimed = conn.execute(
            upsert(peer_subscription_periods)
            .values(peer_id=peer_id, subscription_id=sub_id, period=period, claimed_at=now)
            .on_conflict_do_nothing(index_elements=["peer_id", "subscription_id", "period"])
            .returning(peer_subscription_periods.c.id)
        ).scalar()
        if claimed is not None:
            return True
        taken = conn.execute(
            update(peer_subscription_periods)
            .where(
                *key,
                peer_subscription_periods.c.received_id.is_(None),
                peer_subscription_periods.c.claimed_at < now - CLAIM_STALE,
            )
            .values(claimed_at=now)
        ).rowcount
        return bool(taken == 1)


def fetch_period(
    node: Node, client: PeerClient, subscription_id: int, period: str, *, now: dt.datetime
) -> int:
    """Fetch, verify and store one period's release; return its received id."""
    since = witnessing.last_size(node, client.peer_id)
    path = f"{PATH}/{subscription_id}/periods/{period}?{witnessing.SINCE}={since}"
    exchange, signature = _signed(node, client, path, {}, now)
    return keep_release(node, client, exchange, signature, now=now).received_id


@dataclass
class SyncReport:
    stored: list[tuple[str, int, str, int]] = field(default_factory=list)  # peer, sub, period, rid
    failed: list[str] = field(default_factory=list)  # what went wrong, in words


def sync(
    node: Node,
    http: httpx2.Client,
    *,
    peer_id: str | None = None,
    clock: Callable[[], dt.datetime] = _now,
) -> SyncReport:
    """Fetch every due period not yet stored from every peer we subscribed at (or one)."""
    report = SyncReport()
    with reading(node.engine) as conn:
        ids = sorted(set(conn.execute(select(peer_subscriptions.c.peer_id)).scalars()))
        done = {
            (r.peer_id, r.subscription_id, r.period)
            for r in conn.execute(select(peer_subscription_periods)).all()
            if r.received_id is not None
        }
    for pid in ids if peer_id is None else [peer_id]:
        try:
            client = peer_client(node, http, peers.get_peer(node.engine, pid), clock=clock)
            docs = listing(node, client, now=clock())
        except PeerError as exc:
            report.failed.append(str(exc))
            continue
        for doc in docs:
            sub_id = int(doc["id"])
            for period in doc["due"]:
                if (pid, sub_id, period) in done or not _claim(node, pid, sub_id, period, clock()):
                    continue
                try:
                    received_id = fetch_period(node, client, sub_id, period, now=clock())
                except PeerError as exc:
                    _release_claim(node, pid, sub_id, period)
                    report.failed.append(str(exc))
                    continue
                with writing(node.engine) as conn:
                    conn.execute(
                        update(peer_subscription_periods)
                        .where(
                            peer_subscription_periods.c.peer_id == pid,
                            peer_subscription_periods.c.subscription_id == sub_id,
                            peer_subscription_periods.c.period == period,
                        )
                        .values(received_id=received_id)
                    )
                report.stored.append((pid, sub_id, period, received_id))
    return report


def _release_claim(node: Node, peer_id: str, sub_id: int, period: str) -> None:
    from sqlalchemy import delete

    with writing(node.engine) as conn:
        conn.execute(
            delete(peer_subscription_periods).where(
                peer_subscription_periods.c.peer_id == peer_id,
                peer_subscription_periods.c.subscription_id == sub_id,
                peer_subscription_periods.c.period == period,
                peer_subscription_periods.c.received_id.is_(None),
            )
        )


def ours(node: Node) -> list[dict[str, Any]]:
    """Our subscriptions at peers, as last seen, with the periods stored."""
    with reading(node.engine) as conn:
        subs = conn.execute(select(peer_subscriptions).order_by(peer_subscriptions.c.id)).all()
        stored = conn.execute(
            select(peer_subscription_periods).where(
                peer_subscription_periods.c.received_id.is_not(None)
            )
        ).all()
    out = []
    for s in subs:
        periods = sorted(
            p.period
            for p in stored
            if (p.peer_id, p.subscription_id) == (s.peer_id, s.subscription_id)
        )
        out.append({**dict(s._mapping), "stored": periods})
    return out
