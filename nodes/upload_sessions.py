"""Upload sessions: a report too large for one request, sent in parts, stored as one report.

An agency opens a session for a schema and a media type, sends numbered parts in any order
(sending a number again replaces that part: a retry is always safe), then commits. The file
is the parts' bytes concatenated in number order, so a part may end anywhere, even inside a
row. Parts are kept in the database, not in a worker's memory or disk, so every worker and
replica can take any request of a session, and a node restart loses nothing.

The commit (``exchange.api.upload_commit``) validates the whole file and stores it through
``nodes.reports.store`` in one transaction that also marks the session committed and drops
its parts: the report is all there or none of it is. A session that is not committed
within ``LIFETIME`` of its last part expires and its parts are deleted.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, delete, func, select, update
from sqlalchemy.exc import IntegrityError

from nodes.database import reading, writing
from nodes.reports import IdempotencyConflictError
from nodes.tables import upload_parts, upload_sessions
from nodes.tokens import TokenRecord
from schemas.errors import ConflictError, InvalidInputError, NotFoundError

#: A session not committed this long after its last part expires.
LIFETIME = dt.timedelta(hours=24)
#: Parts a session may hold; with the part size this bounds a file (32 MiB x 10,000 = 312 GiB).
MAX_PARTS = 10_000
#: The media types a session's parts may hold: formats that can be read row by row.
MEDIA_TYPES = ("text/csv", "application/x-ndjson")


@dataclass(frozen=True)
class Part:
    number: int
    size: int
    sha256: str


@dataclass(frozen=True)
class Session:
    id: int
    public_id: str
    token_id: int
    schema_id: str
    media_type: str
    generated_at: dt.datetime | None
    idempotency_key: str | None
    created_at: dt.datetime
    expires_at: dt.datetime
    state: str  # "open" or "committed"
    report_id: int | None
    parts: tuple[Part, ...]

    @property
    def size(self) -> int:
        return sum(p.size for p in self.parts)


def open_session(
    engine: Engine,
    *,
    token: TokenRecord,
    schema_id: str,
    media_type: str,
    generated_at: dt.datetime | None,
    key: str | None,
    now: dt.datetime,
) -> tuple[Session, bool]:
    """A new session, or (with the same ``key``) the token's earlier one: ``(session, reused)``.

    Opening with the key of an earlier session is how a client resumes after losing track
    of it: the answer lists the parts the node already holds.
    """
    if media_type not in MEDIA_TYPES:
        raise InvalidInputError.coded(
            "upload_media_type", media_types=MEDIA_TYPES, media_type=repr(media_type[:40])
        )
    for _attempt in range(2):
        try:
            with writing(engine) as conn:
                _drop_expired(conn, now)
                earlier = _by_key(conn, token, key)
                if earlier is not None:
                    if (earlier.schema_id, earlier.media_type) != (schema_id, media_type):
                        raise IdempotencyConflictError.coded(
                            "upload_key_reused",
                            key=f"'{key}'",
                            upload=earlier.public_id,
                            schema=earlier.schema_id,
                            media_type=earlier.media_type,
                        )
                    return earlier, True
                public_id = secrets.token_urlsafe(16)
                session_id = conn.execute(
                    upload_sessions.insert()
                    .values(
                        public_id=public_id,
                        token_id=token.id,
                        schema_id=schema_id,
                        media_type=media_type,
                        generated_at=generated_at,
                        idempotency_key=key,
                        created_at=now,
                        expires_at=now + LIFETIME,
                        state="open",
                    )
                    .returning(upload_sessions.c.id)
                ).scalar_one()
                return _load(conn, session_id), False
        except IntegrityError:
            if key is None:  # pragma: no cover - a random id collided
                raise
    raise ConflictError.coded("upload_open_conflict")


def get(engine: Engine, *, token: TokenRecord, public_id: str, now: dt.datetime) -> Session:
    """The token's session ``public_id``; another token's, or an expired one, is not found."""
    with reading(engine) as conn:
        return _owned(conn, token, public_id, now)


def put_part(
    engine: Engine,
    *,
    token: TokenRecord,
    public_id: str,
    number: int,
    data: bytes,
    max_bytes: int,
    now: dt.datetime,
) -> Part:
    """Keep ``data`` as part ``number`` (replacing an earlier one) and extend the session."""
    if not 1 <= number <= MAX_PARTS:
        raise InvalidInputError.coded("upload_part_number", maximum=MAX_PARTS, number=number)
    if not data:
        raise InvalidInputError.coded("upload_part_empty")
    part = Part(number=number, size=len(data), sha256=hashlib.sha256(data).hexdigest())
    with writing(engine) as conn:
        session = _owned(conn, token, public_id, now)
        _must_be_open(session)
        others = sum(p.size for p in session.parts if p.number != number)
        if others + part.size > max_bytes:
            raise InvalidInputError.coded(
                "upload_too_large", size=others + part.size, limit=max_bytes
            )
        where = (upload_parts.c.session_id == session.id) & (upload_parts.c.number == number)
        conn.execute(delete(upload_parts).where(where))
        conn.execute(
            upload_parts.insert().values(
                session_id=session.id,
                number=number,
                size=part.size,
                sha256=part.sha256,
                data=data,
            )
        )
        conn.execute(
            update(upload_sessions)
            .where(upload_sessions.c.id == session.id)
            .values(expires_at=now + LIFETIME)
        )
    return part


def read_part(conn: Connection, session: Session, part: Part) -> bytes:
    """The bytes of ``part``, checked against the digest the session listed when it was read.

    Raises ConflictError when the part was replaced since: the commit must store exactly
    what it validated.
    """
    data = conn.execute(
        select(upload_parts.c.data).where(
            upload_parts.c.session_id == session.id, upload_parts.c.number == part.number
        )
    ).scalar_one_or_none()
    if data is None or hashlib.sha256(data).hexdigest() != part.sha256:
        raise ConflictError.coded("upload_part_changed", number=part.number)
    return bytes(data)


def mark_committed(conn: Connection, session: Session, report_id: int) -> None:
    """Record the report the session became and drop its parts, in the storing transaction."""
    result = conn.execute(
        update(upload_sessions)
        .where(upload_sessions.c.id == session.id, upload_sessions.c.state == "open")
        .values(state="committed", report_id=report_id)
    )
    if result.rowcount != 1:
        raise ConflictError.coded("upload_committed_elsewhere", upload=session.public_id)
    conn.execute(delete(upload_parts).where(upload_parts.c.session_id == session.id))


def abandon(engine: Engine, *, token: TokenRecord, public_id: str, now: dt.datetime) -> None:
    """Delete an open session and its parts."""
    with writing(engine) as conn:
        session = _owned(conn, token, public_id, now)
        _must_be_open(session)
        conn.execute(delete(upload_parts).where(upload_parts.c.session_id == session.id))
        conn.execute(delete(upload_sessions).where(upload_sessions.c.id == session.id))


def pending(engine: Engine, now: dt.datetime) -> tuple[int, int]:
    """Open sessions that have not expired, and the bytes their parts hold (for /metrics)."""
    with reading(engine) as conn:
        live = upload_sessions.c.state == "open", upload_sessions.c.expires_at > now
        sessions = conn.execute(
            select(func.count()).select_from(upload_sessions).where(*live)
        ).scalar_one()
        size = conn.execute(
            select(func.coalesce(func.sum(upload_parts.c.size), 0))
            .select_from(upload_parts.join(upload_sessions))
            .where(*live)
        ).scalar_one()
    return int(sessions), int(size)


def _must_be_open(session: Session) -> None:
    if session.state != "open":
        report = session.report_id
        raise ConflictError.coded(
            "upload_committed", upload=session.public_id, report="?" if report is None else report
        )


def _owned(conn: Connection, token: TokenRecord, public_id: str, now: dt.datetime) -> Session:
    row = conn.execute(
        select(upload_sessions.c.id, upload_sessions.c.state, upload_sessions.c.expires_at).where(
            upload_sessions.c.public_id == public_id, upload_sessions.c.token_id == token.id
        )
    ).first()
    if row is None:
        raise NotFoundError.coded("upload_not_found", upload=repr(public_id[:40]))
    if row.state == "open" and row.expires_at <= now:
        raise NotFoundError.coded(
            "upload_expired",
            upload=public_id,
            expired_at=f"{row.expires_at:%Y-%m-%dT%H:%M:%SZ}",
            hours=f"{LIFETIME.total_seconds() / 3600:g}",
        )
    return _load(conn, row.id)


def _by_key(conn: Connection, token: TokenRecord, key: str | None) -> Session | None:
    if key is None:
        return None
    session_id = conn.execute(
        select(upload_sessions.c.id).where(
            upload_sessions.c.token_id == token.id, upload_sessions.c.idempotency_key == key
        )
    ).scalar_one_or_none()
    return None if session_id is None else _load(conn, session_id)


def _load(conn: Connection, session_id: int) -> Session:
    m = conn.execute(select(upload_sessions).where(upload_sessions.c.id == session_id)).one()
    parts = conn.execute(
        select(upload_parts.c.number, upload_parts.c.size, upload_parts.c.sha256)
        .where(upload_parts.c.session_id == session_id)
        .order_by(upload_parts.c.number)
    )
    return Session(
        id=m.id,
        public_id=m.public_id,
        token_id=m.token_id,
        schema_id=m.schema_id,
        media_type=m.media_type,
        generated_at=m.generated_at,
        idempotency_key=m.idempotency_key,
        created_at=m.created_at,
        expires_at=m.expires_at,
        state=m.state,
        report_id=m.report_id,
        parts=tuple(Part(number=p.number, size=p.size, sha256=p.sha256) for p in parts),
    )


def _drop_expired(conn: Connection, now: dt.datetime) -> None:
    expired = select(upload_sessions.c.id).where(
        upload_sessions.c.state == "open", upload_sessions.c.expires_at <= now
    )
    conn.execute(delete(upload_parts).where(upload_parts.c.session_id.in_(expired)))
    conn.execute(
        delete(upload_sessions).where(
            upload_sessions.c.state == "open", upload_sessions.c.expires_at <= now
        )
    )
