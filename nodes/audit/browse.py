"""The log as a person reads it: newest first, a page at a time, each entry's proof checked.

The API and the CLI read in sequence order from a start (`nodes.audit.reading.entries`); a
person wants the latest first and a way back. Pages are keyset-paged on ``seq`` (``before``:
the older page, ``after``: the newer one), never by offset, so the last page of a million
entries costs what the first does. Filters are `nodes.audit.lookup.Filters`, answered like
`lookup.find` answers them: from the ``audit_lookup`` index below the latest checkpoint's
size, and by reading the few newer entries above it.

An entry's inclusion proof is served by `nodes.audit.reading.inclusion`, like the API
serves it, and then checked here the way an auditor's copy would: the checkpoint's
signature with the standalone verifier (`nodes.audit.verifier`), the leaf from the entry's
stored bytes, the root from the leaf and the proof (RFC 9162 §2.1.3.2).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Connection, Engine, select

from nodes.audit import merkle, reading, verifier
from nodes.audit.checkpoint import SignedCheckpoint
from nodes.audit.checkpoint_store import latest_checkpoint
from nodes.audit.errors import InvalidProofError
from nodes.audit.log import read_head
from nodes.audit.lookup import Filters, find, where
from nodes.audit.tables import audit_checkpoints, audit_entries, audit_lookup
from nodes.audit.vocabulary import normalize
from nodes.database import reading as read_transaction
from nodes.identity import load_key
from schemas.errors import NotFoundError

#: Entries on a page of the log, checkpoints on a page of their history.
PAGE = 50


@dataclass(frozen=True, slots=True)
class LogPage:
    """Entries newest first (stored JSON, plus ``leaf_hash`` in hex); ``newer`` is the
    ``after`` of the newer page and ``older`` the ``before`` of the older one (None: none)."""

    entries: list[dict[str, Any]]
    newer: int | None
    older: int | None
    log_size: int
    covered: int


def newest(
    engine: Engine,
    filters: Filters,
    *,
    before: int | None = None,
    after: int | None = None,
    limit: int = PAGE,
) -> LogPage:
    """A page of the entries passing ``filters``, newest first.

    With neither cursor, the newest ``limit``; ``before``: the newest with a smaller seq;
    ``after``: the oldest with a larger seq (the page before, coming back).
    """
    with read_transaction(engine) as conn:
        signed = latest_checkpoint(conn)  # before the head: what it covers is indexed
        head = read_head(conn)
        size = 0 if head is None else head.size
        indexed = 0 if signed is None else signed.checkpoint.tree_size
        if after is None:
            top = size if before is None else min(before, size)
            seqs = _descending(conn, filters, below=top, limit=limit + 1, indexed=indexed)
            older = seqs[limit - 1] if len(seqs) > limit else None
            seqs = seqs[:limit]
            newer = None
            if (
                before is not None
                and seqs
                and _ascending(conn, filters, seqs[0] + 1, 1, indexed, size)
            ):
                newer = seqs[0]
        else:
            up = _ascending(conn, filters, after + 1, limit + 1, indexed, size)
            newer = up[limit - 1] if len(up) > limit else None
            seqs = list(reversed(up[:limit]))
            older = (
                seqs[-1]
                if seqs and _descending(conn, filters, below=seqs[-1], limit=1, indexed=indexed)
                else None
            )
        rows = _rows(conn, seqs)
    return LogPage(entries=rows, newer=newer, older=older, log_size=size, covered=indexed)


def _ascending(
    conn: Connection, filters: Filters, start: int, limit: int, indexed: int, size: int
) -> list[int]:
    if not filters.any:
        return list(range(start, min(start + limit, size)))
    return find(conn, filters, start=start, limit=limit, indexed=indexed)


def _descending(
    conn: Connection, filters: Filters, *, below: int, limit: int, indexed: int
) -> list[int]:
    """The first ``limit`` seqs below ``below`` passing ``filters``, largest first: the
    unindexed entries above ``indexed`` read one by one, the rest from the index."""
    if not filters.any:
        return list(range(below - 1, max(below - 1 - limit, -1), -1))
    found: list[int] = []
    if below > indexed:
        tail = conn.execute(
            select(audit_entries.c.seq, audit_entries.c.entry)
            .where(audit_entries.c.seq >= indexed, audit_entries.c.seq < below)
            .order_by(audit_entries.c.seq.desc())
            .execution_options(yield_per=1000)
        )
        for seq, data in tail:
            if filters.matches(normalize(json.loads(bytes(data)))):
                found.append(int(seq))
                if len(found) == limit:
                    break
        tail.close()
    if len(found) < limit and indexed > 0:
        query = where(select(audit_lookup.c.seq), filters).where(
            audit_lookup.c.seq < min(below, indexed)
        )
        found += conn.execute(
            query.order_by(audit_lookup.c.seq.desc()).limit(limit - len(found))
        ).scalars()
    return found


def _rows(conn: Connection, seqs: Iterable[int]) -> list[dict[str, Any]]:
    wanted = list(seqs)
    if not wanted:
        return []
    rows = conn.execute(
        select(audit_entries.c.entry, audit_entries.c.leaf_hash)
        .where(audit_entries.c.seq.in_(wanted))
        .order_by(audit_entries.c.seq.desc())
    ).all()
    return [{**json.loads(bytes(entry)), "leaf_hash": bytes(leaf).hex()} for entry, leaf in rows]


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """An entry's bytes exactly as stored (what was hashed and signed), and its leaf hash."""

    seq: int
    data: bytes
    leaf_hash: bytes

    @property
    def fields(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.data)
        return parsed


def stored_entry(engine: Engine, seq: int) -> StoredEntry:
    """Entry ``seq`` as stored. Raises NotFoundError if the log has no such entry."""
    with read_transaction(engine) as conn:
        row = conn.execute(
            select(audit_entries.c.entry, audit_entries.c.leaf_hash).where(
                audit_entries.c.seq == seq
            )
        ).first()
    if row is None:
        raise NotFoundError(f"the audit log has no entry seq {seq}")
    return StoredEntry(seq=seq, data=bytes(row.entry), leaf_hash=bytes(row.leaf_hash))


#: What a check found wrong: the checkpoint's signature, the entry's bytes against its
#: leaf, the proof's shape, or the root the proof leads to.
Problem = Literal["signature", "leaf", "proof", "root"]


@dataclass(frozen=True, slots=True)
class InclusionCheck:
    """The outcome of checking one entry against a signed checkpoint.

    ``proof`` is None when the checkpoint does not cover the entry yet (``covered`` False).
    ``problem`` names the first check that failed, ``detail`` says it in the verifier's words.
    """

    checkpoint: SignedCheckpoint
    covered: bool
    proof: reading.InclusionProof | None = None
    root: bytes | None = None
    problem: Problem | None = None
    detail: str = ""

    @property
    def verified(self) -> bool:
        return self.covered and self.problem is None


def check_inclusion(
    engine: Engine,
    *,
    entry: StoredEntry,
    signed: SignedCheckpoint,
    public_key: Ed25519PublicKey,
) -> InclusionCheck:
    """Prove ``entry`` in the tree ``signed`` covers and check the proof independently."""
    size = signed.checkpoint.tree_size
    if entry.seq >= size:
        return InclusionCheck(checkpoint=signed, covered=False)
    proof = reading.inclusion(engine, seq=entry.seq, tree_size=size)
    found = InclusionCheck(checkpoint=signed, covered=True, proof=proof)
    raw = verifier.parse_checkpoint_line(signed.to_line())
    try:
        verifier.verify_checkpoint(raw, public_key)
    except verifier.SignatureError as exc:
        return _failed(found, "signature", str(exc))
    leaf = hashlib.sha256(b"\x00" + entry.data).digest()
    if leaf != proof.leaf_hash:
        return _failed(
            found,
            "leaf",
            f"SHA-256(0x00 || entry) is {leaf.hex()}; the tree holds {proof.leaf_hash.hex()}",
        )
    try:
        root = merkle.root_from_inclusion_proof(leaf, entry.seq, size, proof.proof)
    except InvalidProofError as exc:
        return _failed(found, "proof", str(exc))
    found = InclusionCheck(checkpoint=signed, covered=True, proof=proof, root=root)
    if root.hex() != raw.root_hash:
        return _failed(found, "root", f"the proof leads to {root.hex()}; signed: {raw.root_hash}")
    return found


def _failed(found: InclusionCheck, problem: Problem, detail: str) -> InclusionCheck:
    return InclusionCheck(
        checkpoint=found.checkpoint,
        covered=True,
        proof=found.proof,
        root=found.root,
        problem=problem,
        detail=detail,
    )


def signing_key(keys_dir: Path, claimed: str, current: Ed25519PublicKey) -> Ed25519PublicKey:
    """The node's public key that ``claimed`` (a checkpoint's key id) names, if the node
    still holds it; else ``current``, which then fails to verify and says so."""
    if verifier.key_id_matches(current, claimed):
        return current
    for pem in keys_dir.glob("*.pem"):
        key = load_key(keys_dir, pem.stem).public_key
        if verifier.key_id_matches(key, claimed):
            return key
    return current


@dataclass(frozen=True, slots=True)
class CheckpointRow:
    """One checkpoint this node signed, as the history lists it."""

    id: int
    tree_size: int
    root_hash: str
    time: Any
    key_id: str


@dataclass(frozen=True, slots=True)
class CheckpointPage:
    """Checkpoints newest first; ``older`` is the ``before`` of the next page (None: none)."""

    checkpoints: list[CheckpointRow]
    older: int | None
    newer: int | None


def checkpoint_history(
    engine: Engine, *, before: int | None = None, after: int | None = None, limit: int = PAGE
) -> CheckpointPage:
    """The checkpoints this node signed and kept, newest first, keyset-paged on their id."""
    table = audit_checkpoints
    columns = select(table.c.id, table.c.tree_size, table.c.root_hash, table.c.time, table.c.key_id)
    with read_transaction(engine) as conn:
        if after is None:
            query = columns if before is None else columns.where(table.c.id < before)
            rows = conn.execute(query.order_by(table.c.id.desc()).limit(limit + 1)).all()
            more = len(rows) > limit
            rows = rows[:limit]
            newer = (
                rows[0].id
                if before is not None and rows and _exists(conn, table.c.id > rows[0].id)
                else None
            )
            older = rows[-1].id if more else None
        else:
            rows = conn.execute(
                columns.where(table.c.id > after).order_by(table.c.id).limit(limit + 1)
            ).all()
            newer = rows[limit - 1].id if len(rows) > limit else None
            rows = list(reversed(rows[:limit]))
            older = rows[-1].id if rows and _exists(conn, table.c.id < rows[-1].id) else None
    found = [
        CheckpointRow(
            id=int(r.id),
            tree_size=int(r.tree_size),
            root_hash=r.root_hash,
            time=r.time,
            key_id=r.key_id,
        )
        for r in rows
    ]
    return CheckpointPage(checkpoints=found, older=older, newer=newer)


def _exists(conn: Connection, condition: Any) -> bool:
    return (
        conn.execute(select(audit_checkpoints.c.id).where(condition).limit(1)).first() is not None
    )
