"""Releases received from peers, kept with the exact signed exchange that delivered them.

We store the request we sent and the response we got, byte for byte, not a re-serialized
copy: the peer's response signature covers its body, its status and our request's own
signature, so keeping all of it lets anyone verify later, against the peer's key, that
this node received exactly this release from that peer for exactly that question.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, insert, select

from nodes.audit import log as audit_log
from nodes.database import reading, writing
from nodes.federation_tables import peers, received_releases
from schemas.errors import NotFoundError

Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class RawRequest:
    method: str
    url: str
    headers: Headers
    body: bytes


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: Headers
    body: bytes


@dataclass(frozen=True)
class ReceivedRelease:
    id: int
    peer_id: str
    release_id: str
    schema_id: str
    key_id: str
    received_at: datetime
    cached: bool
    request: RawRequest
    response: RawResponse
    superseded_by_notice: int | None = None  # the received notice of a correction, if any

    @property
    def document(self) -> dict[str, Any]:
        """The release as the peer sent it (the response body, parsed)."""
        parsed: dict[str, Any] = json.loads(self.response.body)
        return parsed


def _headers(text: str) -> Headers:
    return tuple((str(name), str(value)) for name, value in json.loads(text))


def _record(row: Any) -> ReceivedRelease:
    m = row._mapping
    return ReceivedRelease(
        id=m["id"],
        peer_id=m["peer_id"],
        release_id=m["release_id"],
        schema_id=m["schema_id"],
        key_id=m["key_id"],
        received_at=m["received_at"],
        cached=bool(m["cached"]),
        request=RawRequest(
            m["request_method"], m["request_url"], _headers(m["request_headers"]), m["request_body"]
        ),
        response=RawResponse(
            m["response_status"], _headers(m["response_headers"]), m["response_body"]
        ),
        superseded_by_notice=m["superseded_by_notice"],
    )


def kept_exchange(request: RawRequest, response: RawResponse) -> dict[str, object]:
    """The columns that keep a signed exchange exactly as sent and received (a release's,
    a notice's), so that its signature can be checked again later."""
    return {
        "request_method": request.method,
        "request_url": request.url,
        "request_headers": json.dumps(request.headers),
        "request_body": request.body,
        "response_status": response.status,
        "response_headers": json.dumps(response.headers),
        "response_body": response.body,
    }


def store(
    engine: Engine,
    *,
    peer_id: str,
    release_id: str,
    schema_id: str,
    key_id: str,
    cached: bool,
    request: RawRequest,
    response: RawResponse,
    now: datetime,
) -> int:
    """Keep a verified release and audit its receipt, in one transaction; return its id.

    Call only after the response signature verified: this table holds evidence, and an
    unverified response is none.
    """
    with writing(engine) as conn:
        result = conn.execute(
            insert(received_releases).values(
                peer_id=peer_id,
                release_id=release_id,
                schema_id=schema_id,
                key_id=key_id,
                received_at=now,
                cached=cached,
                **kept_exchange(request, response),
            )
        )
        stored_id = result.inserted_primary_key[0] if result.inserted_primary_key else None
        assert stored_id is not None
        audit_log.append(
            conn,
            actor=f"partner:{peer_id}",
            role="partner",
            action="release.receive",
            resource=f"partner:{peer_id}/release:{release_id}",
            outcome="replayed" if cached else "allowed",
            reason=f"{schema_id} release signed by key {key_id}",
            partner=peer_id,
            schema=schema_id,
            now=now,
        )
    return int(stored_id)


@dataclass(frozen=True)
class Listed:
    """A received release with the name its provider has in our peer registry."""

    release: ReceivedRelease
    peer_name: str


def _with_names() -> Any:
    return select(received_releases, peers.c.name.label("peer_name")).join(
        peers, peers.c.id == received_releases.c.peer_id
    )


def listing(engine: Engine, *, offset: int, limit: int) -> list[Listed]:
    """One page of received releases, newest first (ids grow with time, so the primary key
    orders them; a deep page skips ``offset`` index entries, a few thousand at most for a
    node's received releases)."""
    query = _with_names().order_by(received_releases.c.id.desc()).offset(offset).limit(limit)
    with reading(engine) as conn:
        rows = conn.execute(query).all()
    return [Listed(_record(row), row._mapping["peer_name"]) for row in rows]


def find(engine: Engine, received_id: int) -> Listed:
    """The received release ``received_id`` with its provider's name; raises NotFoundError."""
    with reading(engine) as conn:
        row = conn.execute(_with_names().where(received_releases.c.id == received_id)).first()
    if row is None:
        raise NotFoundError(f"no received release {received_id}")
    return Listed(_record(row), row._mapping["peer_name"])


def get(engine: Engine, received_id: int) -> ReceivedRelease:
    """The received release ``received_id``; raises NotFoundError."""
    return find(engine, received_id).release


def count(engine: Engine) -> int:
    with reading(engine) as conn:
        return int(conn.execute(select(func.count()).select_from(received_releases)).scalar_one())
