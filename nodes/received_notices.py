"""Correction notices received from peers, kept with the signed exchange that delivered them.

Like a received release, a notice is kept with the request we sent and the response we got,
byte for byte, so its signature can be checked again later against the peer's key. One
fetch may bring several notices; each row keeps the whole exchange (notices are rare and
small, and a row then stands on its own as evidence). Storing a notice marks the received
releases it names as superseded (``received_releases.superseded_by_notice``); the release
itself is untouched evidence, and asking again is a new release, charged as usual.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select, update

from nodes.database import reading, writing
from nodes.federation_tables import received_releases
from nodes.notices import received_notices
from nodes.releases.received import Headers, RawRequest, RawResponse, kept_exchange
from schemas.errors import NotFoundError


@dataclass(frozen=True)
class ReceivedNotice:
    id: int
    peer_id: str
    notice_id: int
    schema_id: str
    document: dict[str, Any]
    key_id: str
    received_at: datetime
    request: RawRequest
    response: RawResponse
    superseded: tuple[int, ...] = ()  # our received releases it marked


def _headers(text: str) -> Headers:
    return tuple((str(name), str(value)) for name, value in json.loads(text))


def _record(row: Any, superseded: tuple[int, ...] = ()) -> ReceivedNotice:
    m = row._mapping
    return ReceivedNotice(
        id=m["id"],
        peer_id=m["peer_id"],
        notice_id=m["notice_id"],
        schema_id=m["schema_id"],
        document=json.loads(m["document"]),
        key_id=m["key_id"],
        received_at=m["received_at"],
        request=RawRequest(
            m["request_method"], m["request_url"], _headers(m["request_headers"]), m["request_body"]
        ),
        response=RawResponse(
            m["response_status"], _headers(m["response_headers"]), m["response_body"]
        ),
        superseded=superseded,
    )


def store(
    engine: Engine,
    *,
    peer_id: str,
    notices: list[dict[str, Any]],
    key_id: str,
    request: RawRequest,
    response: RawResponse,
    now: datetime,
) -> list[int]:
    """Keep verified notices (those not held already) and mark the releases they name.

    Call only after the response signature verified and the documents were checked
    (``notice_id`` an int, ``release_ids`` a list of ints). Returns the new rows' ids.
    """
    stored: list[int] = []
    with writing(engine) as conn:
        for notice in notices:
            held = conn.execute(
                select(received_notices.c.id).where(
                    received_notices.c.peer_id == peer_id,
                    received_notices.c.notice_id == notice["notice_id"],
                )
            ).first()
            if held is not None:
                continue
            row_id = conn.execute(
                received_notices.insert()
                .values(
                    peer_id=peer_id,
                    notice_id=notice["notice_id"],
                    schema_id=str(notice.get("schema", "")),
                    document=json.dumps(notice, sort_keys=True),
                    key_id=key_id,
                    received_at=now,
                    **kept_exchange(request, response),
                )
                .returning(received_notices.c.id)
            ).scalar_one()
            names = [str(i) for i in notice["release_ids"]]
            conn.execute(
                update(received_releases)
                .where(
                    received_releases.c.peer_id == peer_id,
                    received_releases.c.release_id.in_(names),
                    received_releases.c.superseded_by_notice.is_(None),
                )
                .values(superseded_by_notice=row_id)
            )
            stored.append(int(row_id))
    return stored


def listing(engine: Engine, *, peer_id: str | None = None, after: int = 0) -> list[ReceivedNotice]:
    """Received notices (of one peer, or all) with ``notice_id`` above ``after``, in order,
    each with the received releases it marked superseded."""
    query = select(received_notices).where(received_notices.c.notice_id > after)
    if peer_id is not None:
        query = query.where(received_notices.c.peer_id == peer_id)
    with reading(engine) as conn:
        rows = conn.execute(
            query.order_by(received_notices.c.peer_id, received_notices.c.notice_id)
        ).all()
        marked: dict[int, list[int]] = {}
        ids = [row.id for row in rows]
        if ids:
            for received_id, notice in conn.execute(
                select(received_releases.c.id, received_releases.c.superseded_by_notice).where(
                    received_releases.c.superseded_by_notice.in_(ids)
                )
            ):
                marked.setdefault(int(notice), []).append(int(received_id))
    return [_record(row, tuple(sorted(marked.get(row.id, [])))) for row in rows]


def get(engine: Engine, received_notice_id: int) -> ReceivedNotice:
    """The received notice ``received_notice_id``; raises NotFoundError."""
    with reading(engine) as conn:
        row = conn.execute(
            select(received_notices).where(received_notices.c.id == received_notice_id)
        ).first()
    if row is None:
        raise NotFoundError(f"no received notice {received_notice_id}")
    return _record(row)


def last_notice_id(engine: Engine, peer_id: str) -> int:
    """The highest notice id held from ``peer_id`` (0 if none): where the next fetch starts."""
    with reading(engine) as conn:
        found = conn.execute(
            select(func.max(received_notices.c.notice_id)).where(
                received_notices.c.peer_id == peer_id
            )
        ).scalar_one()
    return int(found or 0)
