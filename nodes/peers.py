"""The peer registry: which partner nodes exist, where they are, and which keys speak for them.

Unknown peers get nothing: a partner's request is authenticated only by a key registered
here, unrevoked, of a peer not removed, and inside the key's validity. Revocation and
removal take effect at once, for every worker, because the check reads the database on
every request. Nothing is deleted: removal and revocation stamp a time.

Functions taking a ``conn`` never commit (the caller owns the transaction); the ``*_peer``
functions taking an ``engine`` are the operator's acts, each in one transaction with its
audit entry.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Connection, Engine, select, update

from nodes.audit import log as audit_log
from nodes.audit.vocabulary import Action
from nodes.database import reading, writing
from nodes.federation_tables import peer_keys, peers
from nodes.identity import key_id, parse_public_key
from schemas.errors import ConflictError, InvalidInputError, NotFoundError

PEER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{1,31}")


class UnknownPeerError(NotFoundError):
    """No peer is registered under this id (or it was removed)."""


@dataclass(frozen=True)
class PeerKey:
    key_id: str
    public_key: str
    valid_from: datetime | None
    valid_until: datetime | None
    revoked_at: datetime | None
    source: str

    def usable_at(self, moment: datetime) -> bool:
        """Unrevoked and not past its end. A start in the future is no bar: the key was
        endorsed or registered by the operator, and clocks differ."""
        return self.revoked_at is None and (self.valid_until is None or moment < self.valid_until)

    @property
    def key(self) -> Ed25519PublicKey:
        return parse_public_key(self.public_key)


@dataclass(frozen=True)
class Peer:
    id: str
    name: str
    url: str
    added_at: datetime
    updated_at: datetime
    removed_at: datetime | None
    keys: tuple[PeerKey, ...]

    def usable_keys(self, moment: datetime) -> list[PeerKey]:
        return [k for k in self.keys if k.usable_at(moment)] if self.removed_at is None else []


@dataclass(frozen=True)
class NewKey:
    """A key to register: its text, its validity if known, and how we came to trust it."""

    public_key: str
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    source: str = "operator"


def check_url(url: str) -> str:
    """A peer's base URL: absolute http(s), no query or fragment, no trailing slash."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInputError(f"peer URL {url!r} must be an absolute http(s) URL")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise InvalidInputError(f"peer URL {url!r} must carry no query, fragment or credentials")
    return url.rstrip("/")


def _key_row(row: object) -> PeerKey:
    m = row._mapping  # type: ignore[attr-defined]
    return PeerKey(
        m["key_id"],
        m["public_key"],
        m["valid_from"],
        m["valid_until"],
        m["revoked_at"],
        m["source"],
    )


def get(conn: Connection, peer_id: str, *, include_removed: bool = False) -> Peer:
    """The peer and all its keys (revoked ones too); raises UnknownPeerError."""
    row = conn.execute(select(peers).where(peers.c.id == peer_id)).first()
    if row is None or (row.removed_at is not None and not include_removed):
        raise UnknownPeerError(f"no peer '{peer_id}' is registered on this node")
    keys = conn.execute(
        select(peer_keys).where(peer_keys.c.peer_id == peer_id).order_by(peer_keys.c.added_at)
    )
    return Peer(
        row.id,
        row.name,
        row.url,
        row.added_at,
        row.updated_at,
        row.removed_at,
        tuple(_key_row(k) for k in keys),
    )


def list_all(conn: Connection, *, include_removed: bool = False) -> list[Peer]:
    query = select(peers.c.id).order_by(peers.c.id)
    if not include_removed:
        query = query.where(peers.c.removed_at.is_(None))
    return [get(conn, pid, include_removed=True) for pid in conn.execute(query).scalars()]


def resolve(conn: Connection, kid: str, *, now: datetime) -> tuple[str, Ed25519PublicKey] | None:
    """The peer id and public key behind ``kid`` if it may sign now, else None.

    One indexed lookup per request, so a revocation is seen by every worker at once.
    """
    row = conn.execute(
        select(peer_keys, peers.c.removed_at)
        .join(peers, peers.c.id == peer_keys.c.peer_id)
        .where(peer_keys.c.key_id == kid)
    ).first()
    if row is None or row.removed_at is not None or not _key_row(row).usable_at(now):
        return None
    return row.peer_id, parse_public_key(row.public_key)


def insert_key(conn: Connection, *, peer_id: str, new: NewKey, now: datetime) -> PeerKey:
    """Register one more key for a peer; a key id already registered anywhere is a conflict."""
    try:
        public = parse_public_key(new.public_key)
    except ValueError as exc:
        raise InvalidInputError(f"key for peer '{peer_id}': {exc}") from None
    kid = key_id(public)
    owner = conn.execute(
        select(peer_keys.c.peer_id, peer_keys.c.revoked_at).where(peer_keys.c.key_id == kid)
    ).first()
    if owner is not None:
        if owner.peer_id != peer_id:
            raise ConflictError(f"key {kid} is already registered for peer '{owner.peer_id}'")
        if owner.revoked_at is not None:
            raise ConflictError(f"key {kid} was revoked; a revoked key is never trusted again")
        raise ConflictError(f"key {kid} is already registered for peer '{peer_id}'")
    conn.execute(
        peer_keys.insert().values(
            key_id=kid,
            peer_id=peer_id,
            public_key=new.public_key,
            valid_from=new.valid_from,
            valid_until=new.valid_until,
            revoked_at=None,
            added_at=now,
            source=new.source,
        )
    )
    return PeerKey(kid, new.public_key, new.valid_from, new.valid_until, None, new.source)


def add(
    conn: Connection, *, peer_id: str, name: str, url: str, keys: Sequence[NewKey], now: datetime
) -> Peer:
    """Register a peer with at least one key; a removed peer can be added again.

    Raises InvalidInputError for a bad id, URL or key, ConflictError if the peer is
    registered already or a key belongs to someone else (or was revoked).
    """
    if not PEER_ID.fullmatch(peer_id):
        raise InvalidInputError(f"peer id {peer_id!r} must be 2-32 letters, digits, '_' or '-'")
    if not keys:
        raise InvalidInputError("a peer needs at least one public key")
    url = check_url(url)
    existing = conn.execute(select(peers.c.removed_at).where(peers.c.id == peer_id)).first()
    if existing is not None and existing.removed_at is None:
        raise ConflictError(f"peer '{peer_id}' is already registered; remove it first")
    values = {"name": name or peer_id, "url": url, "updated_at": now, "removed_at": None}
    if existing is None:
        conn.execute(peers.insert().values(id=peer_id, added_at=now, **values))
    else:
        conn.execute(update(peers).where(peers.c.id == peer_id).values(**values))
    for new in keys:
        insert_key(conn, peer_id=peer_id, new=new, now=now)
    return get(conn, peer_id)


def remove(conn: Connection, *, peer_id: str, now: datetime) -> Peer:
    """Remove a peer and revoke all its keys, at once."""
    get(conn, peer_id)
    conn.execute(update(peers).where(peers.c.id == peer_id).values(removed_at=now, updated_at=now))
    conn.execute(
        update(peer_keys)
        .where(peer_keys.c.peer_id == peer_id, peer_keys.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return get(conn, peer_id, include_removed=True)


def revoke_key(conn: Connection, *, peer_id: str, kid: str, now: datetime) -> PeerKey:
    """Revoke one key of a peer; final (the key can never be registered again)."""
    peer = get(conn, peer_id, include_removed=True)
    found = [k for k in peer.keys if k.key_id == kid]
    if not found:
        raise NotFoundError(f"peer '{peer_id}' has no key {kid}")
    if found[0].revoked_at is not None:
        return found[0]
    conn.execute(update(peer_keys).where(peer_keys.c.key_id == kid).values(revoked_at=now))
    return replace(found[0], revoked_at=now)


def shorten_validity(conn: Connection, *, kid: str, valid_until: datetime) -> None:
    """End a key's validity earlier (never later): what an authenticated rotation says."""
    row = conn.execute(select(peer_keys.c.valid_until).where(peer_keys.c.key_id == kid)).first()
    if row is not None and (row.valid_until is None or valid_until < row.valid_until):
        conn.execute(
            update(peer_keys).where(peer_keys.c.key_id == kid).values(valid_until=valid_until)
        )


def _audit(conn: Connection, action: Action, peer_id: str, reason: str, now: datetime) -> None:
    audit_log.append(
        conn,
        actor="operator",
        role="operator",
        action=action,
        resource=f"partner:{peer_id}",
        outcome="allowed",
        reason=reason,
        partner=peer_id,
        now=now,
    )


def add_peer(
    engine: Engine, *, peer_id: str, name: str, url: str, keys: Sequence[NewKey], now: datetime
) -> Peer:
    """The operator registers a peer; audited in the same transaction."""
    with writing(engine) as conn:
        peer = add(conn, peer_id=peer_id, name=name, url=url, keys=keys, now=now)
        kids = ", ".join(k.key_id for k in peer.keys if k.revoked_at is None)
        _audit(conn, "peer.add", peer_id, f"registered {peer.url} with keys {kids}", now)
    return peer


def remove_peer(engine: Engine, *, peer_id: str, now: datetime) -> Peer:
    with writing(engine) as conn:
        peer = remove(conn, peer_id=peer_id, now=now)
        _audit(conn, "peer.remove", peer_id, "removed; all its keys revoked", now)
    return peer


def revoke_peer_key(engine: Engine, *, peer_id: str, kid: str, now: datetime) -> PeerKey:
    with writing(engine) as conn:
        revoked = revoke_key(conn, peer_id=peer_id, kid=kid, now=now)
        _audit(conn, "peer.key.revoke", peer_id, f"revoked key {kid}", now)
    return revoked


def list_peers(engine: Engine, *, include_removed: bool = False) -> list[Peer]:
    with reading(engine) as conn:
        return list_all(conn, include_removed=include_removed)


def get_peer(engine: Engine, peer_id: str) -> Peer:
    with reading(engine) as conn:
        return get(conn, peer_id)


def audit_rejection(
    engine: Engine,
    *,
    claimed_key: str | None,
    kind: str,
    detail: str,
    request_digest: str | None,
    now: datetime,
) -> None:
    """Log a refused partner request in a transaction of its own (nothing else is written).

    The key id is only what the request claimed: the signature did not verify, so the
    entry names no peer.
    """
    with writing(engine) as conn:
        audit_log.append(
            conn,
            actor="unknown",
            role="partner",
            action="release.request",
            resource="route:POST /v1/releases",
            outcome="denied",
            reason=f"signature check failed ({kind}): {detail}"
            + (f"; the request claimed key {claimed_key}" if claimed_key else ""),
            request_digest=request_digest,
            now=now,
        )
