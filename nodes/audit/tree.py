"""The log's Merkle tree as stored: roots and proofs in O(log n) lookups, never a re-hash.

Leaf hashes live in ``audit_entries``; hashes of complete subtrees of height 1 and up live in
``audit_nodes``, written by `extend` when a checkpoint is signed. Every root and proof the
RFC asks for is a fold of a few complete subtrees (`nodes.audit.merkle.subtrees`), so one
query fetches exactly those hashes. Only tree sizes up to the largest signed checkpoint are
served: sizes beyond it have no stored subtrees yet, and a proof against an unsigned size
proves nothing anyway.

Nothing here takes locks: the caller holds the transaction (`nodes.audit.checkpoint_store` serializes
`extend`).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, and_, insert, or_, select

from nodes.audit.errors import LogIntegrityError
from nodes.audit.merkle import (
    EMPTY_ROOT,
    Frontier,
    consistency_ranges,
    fold,
    inclusion_ranges,
    subtrees,
)
from nodes.audit.tables import audit_entries, audit_nodes

Subtree = tuple[int, int]

#: Entries read per query when `extend` catches up on a large log.
_BATCH = 5000


def fetch(conn: Connection, wanted: Iterable[Subtree]) -> dict[Subtree, bytes]:
    """The stored hashes of the given subtrees ``(height, index)``.

    Raises LogIntegrityError if one is missing: the subtree cache no longer matches the log.
    """
    wanted = set(wanted)
    leaves = [j for h, j in wanted if h == 0]
    inner = [(h, j) for h, j in wanted if h > 0]
    found: dict[Subtree, bytes] = {}
    if leaves:
        rows = conn.execute(
            select(audit_entries.c.seq, audit_entries.c.leaf_hash).where(
                audit_entries.c.seq.in_(leaves)
            )
        )
        found.update(((0, int(seq)), bytes(leaf)) for seq, leaf in rows)
    if inner:
        # One ``height = h AND idx IN (...)`` per height: both backends answer it from the
        # primary key, where SQLite scans the whole table for a row-value ``IN``.
        by_height: dict[int, list[int]] = {}
        for h, j in inner:
            by_height.setdefault(h, []).append(j)
        nodes = conn.execute(
            select(audit_nodes.c.height, audit_nodes.c.idx, audit_nodes.c.hash).where(
                or_(
                    *(
                        and_(audit_nodes.c.height == h, audit_nodes.c.idx.in_(js))
                        for h, js in sorted(by_height.items())
                    )
                )
            )
        )
        found.update(((int(h), int(j)), bytes(value)) for h, j, value in nodes)
    missing = wanted - found.keys()
    if missing:
        h, j = min(missing)
        raise LogIntegrityError(f"the stored Merkle subtree (height {h}, index {j}) is missing")
    return found


def _roots(conn: Connection, ranges: list[tuple[int, int]]) -> list[bytes]:
    pieces = [subtrees(lo, hi) for lo, hi in ranges]
    found = fetch(conn, (p for range_pieces in pieces for p in range_pieces))
    return [fold([found[p] for p in range_pieces]) for range_pieces in pieces]


def root_at(conn: Connection, size: int) -> bytes:
    """MTH of the first ``size`` entries (``size`` at most the largest checkpoint's)."""
    return EMPTY_ROOT if size == 0 else _roots(conn, [(0, size)])[0]


def leaf_at(conn: Connection, seq: int) -> bytes:
    """The stored leaf hash of entry ``seq``."""
    return fetch(conn, [(0, seq)])[(0, seq)]


def inclusion_proof(conn: Connection, seq: int, size: int) -> list[bytes]:
    """RFC 9162 inclusion proof of entry ``seq`` in the tree of ``size`` entries.

    Raises ValueError if ``seq`` is not below ``size``.
    """
    return _roots(conn, inclusion_ranges(seq, size))


def consistency_proof(conn: Connection, first: int, second: int) -> list[bytes]:
    """RFC 9162 consistency proof that the tree of ``second`` entries extends ``first``.

    Raises ValueError unless ``0 <= first <= second``.
    """
    return _roots(conn, consistency_ranges(first, second))


def frontier_at(conn: Connection, size: int) -> Frontier:
    """The stored right edge of the tree of ``size`` entries, ready to be extended."""
    pieces = subtrees(0, size)
    found = fetch(conn, pieces)
    return Frontier(size, [found[p] for p in pieces])


def extend(conn: Connection, start: int, stop: int) -> bytes:
    """Store the subtrees completed by entries ``start..stop-1``; return the root at ``stop``.

    ``start`` must be the size the stored subtrees already cover (the largest checkpoint's).
    Reads each new leaf once; O(log n) reads for the edge. Raises LogIntegrityError if an
    entry in the range is missing.
    """
    frontier = frontier_at(conn, start)
    for low in range(start, stop, _BATCH):
        rows = conn.execute(
            select(audit_entries.c.seq, audit_entries.c.leaf_hash)
            .where(audit_entries.c.seq >= low, audit_entries.c.seq < min(low + _BATCH, stop))
            .order_by(audit_entries.c.seq)
        ).all()
        completed: list[dict[str, object]] = []
        for seq, leaf in rows:
            if seq != frontier.size:
                break
            completed.extend(
                {"height": h, "idx": j, "hash": value}
                for h, j, value in frontier.append(bytes(leaf))
            )
        if completed:
            conn.execute(insert(audit_nodes), completed)
        if frontier.size != min(low + _BATCH, stop):
            raise LogIntegrityError(f"audit entry seq {frontier.size} is missing")
    return frontier.root()
