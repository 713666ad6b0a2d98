"""What an auditor can read: pages of entries, the latest checkpoint, inclusion and
consistency proofs. Read-only; every function opens its own read transaction.

Proofs are served only for tree sizes up to the latest signed checkpoint: those are the
sizes an auditor can check a proof against (a root nobody signed proves nothing), and the
ones the stored subtrees cover (`nodes.audit.tree`). A proof for any other size, or for an
entry outside the tree, does not exist: NotFoundError (404), like an unknown report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Connection, Engine, select

from nodes.audit import checkpoint_store, lookup, tree
from nodes.audit.checkpoint import SignedCheckpoint
from nodes.audit.checkpoint_store import latest_checkpoint
from nodes.audit.log import read_head
from nodes.audit.tables import audit_entries
from nodes.database import reading
from schemas.errors import InvalidInputError, NotFoundError

MAX_PAGE = 1000


@dataclass(frozen=True, slots=True)
class EntryPage:
    """Entries in seq order; ``next_start`` is where the next page starts (None: no more)."""

    entries: list[dict[str, Any]]
    next_start: int | None
    log_size: int


@dataclass(frozen=True, slots=True)
class InclusionProof:
    seq: int
    tree_size: int
    leaf_hash: bytes
    proof: list[bytes]
    root_hash: bytes


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    first: int
    second: int
    first_root: bytes
    second_root: bytes
    proof: list[bytes]


def entries(
    engine: Engine,
    *,
    start: int = 0,
    limit: int = 100,
    actor: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> EntryPage:
    """Entries with ``seq >= start`` matching every filter given, at most ``limit``.

    Each entry is its stored canonical JSON as an object, plus its ``leaf_hash`` (hex).
    ``since`` is inclusive, ``until`` exclusive. Raises InvalidInputError on a bad limit.
    """
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInputError(f"limit must be from 1 to {MAX_PAGE}")
    filters = lookup.Filters(actor=actor, action=action, since=since, until=until)
    table = audit_entries
    query = select(table.c.seq, table.c.entry, table.c.leaf_hash)
    with reading(engine) as conn:
        signed = latest_checkpoint(conn)  # before the head: what it covers is indexed
        head = read_head(conn)
        if filters.any:
            indexed = 0 if signed is None else signed.checkpoint.tree_size
            seqs = lookup.find(conn, filters, start=start, limit=limit + 1, indexed=indexed)
            query = query.where(table.c.seq.in_(seqs))
        else:
            query = query.where(table.c.seq >= start).limit(limit + 1)
        rows = conn.execute(query.order_by(table.c.seq)).all()
    page = [
        {**json.loads(bytes(entry)), "leaf_hash": bytes(leaf).hex()}
        for _seq, entry, leaf in rows[:limit]
    ]
    more = len(rows) > limit
    return EntryPage(
        entries=page,
        next_start=int(rows[limit - 1].seq) + 1 if more else None,
        log_size=0 if head is None else head.size,
    )


def checkpoint(engine: Engine, *, sign_with: Ed25519PrivateKey, now: datetime) -> SignedCheckpoint:
    """The latest signed checkpoint; if none was signed yet, sign one now and return it.

    An auditor always gets an answer: a log with entries but no checkpoint yet (before the
    first interval) gets one covering them, an empty log the signed head of the empty tree.
    """
    found = latest_checkpoint(engine)
    if found is None:
        found = checkpoint_store.sign(engine, sign_with, now=now, force=False)
    return found


def inclusion(engine: Engine, *, seq: int, tree_size: int | None = None) -> InclusionProof:
    """Proof that entry ``seq`` is in the tree of ``tree_size`` (default: latest checkpoint).

    Raises NotFoundError if no checkpoint exists or the sizes are out of range.
    """
    with reading(engine) as conn:
        signed = _signed_size(conn)
        size = signed if tree_size is None else tree_size
        _check_size("tree_size", size, signed)
        if not 0 <= seq < size:
            raise NotFoundError(f"entry seq {seq} is not in the tree of size {size}")
        return InclusionProof(
            seq=seq,
            tree_size=size,
            leaf_hash=tree.leaf_at(conn, seq),
            proof=tree.inclusion_proof(conn, seq, size),
            root_hash=tree.root_at(conn, size),
        )


def consistency(engine: Engine, *, first: int, second: int | None = None) -> ConsistencyProof:
    """Proof that the tree of ``second`` entries (default: latest checkpoint) extends ``first``.

    Raises NotFoundError if no checkpoint exists or the sizes are out of range.
    """
    with reading(engine) as conn:
        signed = _signed_size(conn)
        size = signed if second is None else second
        _check_size("second", size, signed)
        if not 0 <= first <= size:
            raise NotFoundError(
                f"no consistency proof from tree size {first} to the smaller size {size}"
            )
        return ConsistencyProof(
            first=first,
            second=size,
            first_root=tree.root_at(conn, first),
            second_root=tree.root_at(conn, size),
            proof=tree.consistency_proof(conn, first, size),
        )


def _signed_size(conn: Connection) -> int:
    signed = latest_checkpoint(conn)
    if signed is None:
        raise NotFoundError("no checkpoint has been signed yet: there is nothing to prove")
    return signed.checkpoint.tree_size


def _check_size(name: str, size: int, signed: int) -> None:
    if not 0 <= size <= signed:
        raise NotFoundError(
            f"{name} {size} is beyond the latest signed checkpoint (tree size {signed}); "
            "proofs are served for signed tree sizes only"
        )
