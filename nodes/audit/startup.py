"""The start-up check: a node refuses to serve a log that was cut short or rewritten.

Before serving, the node re-reads its whole log once and checks it against the newest
checkpoint it signed: the checkpoint's signature verifies with one of the node's own keys,
the log holds at least as many entries, every entry still hashes to its stored leaf hash
and chains to the one before, the Merkle root of the first ``tree_size`` entries (recomputed
from the entry bytes, not from stored hashes) equals the signed root, the stored subtrees
that the next checkpoint will build on match, and the head row agrees with the entries.

What this cannot catch alone: a database restored *whole* from a backup (log and
checkpoints rolled back together) is self-consistent. Peers that hold a later checkpoint of
this node catch that (`nodes.audit.witness`).

The check streams the log with O(log n) memory; it costs about one SHA-256 per entry.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Connection, Engine, select

from nodes.audit import tree
from nodes.audit.checkpoint import SignedCheckpoint, key_id_for, verify_checkpoint
from nodes.audit.entry import GENESIS_PREV
from nodes.audit.errors import InvalidCheckpointError, LogIntegrityError
from nodes.audit.log import initialize, read_head
from nodes.audit.merkle import Frontier
from nodes.audit.signer import latest_checkpoint
from nodes.audit.tables import audit_entries
from nodes.database import reading

_PREV = b'"prev":"'  # a key: inside JSON strings a quote is always escaped


@dataclass(frozen=True, slots=True)
class LogStatus:
    """What the start-up check established."""

    entries: int
    checkpoint_size: int | None
    root_hash: str | None


def open_log(engine: Engine, *, node_id: str, keys_dir: Path) -> LogStatus:
    """Create the log's head if needed, then check the log. Raises LogIntegrityError."""
    initialize(engine, node_id=node_id)
    return check_log(engine, public_keys=known_public_keys(keys_dir))


def known_public_keys(keys_dir: Path) -> dict[str, Ed25519PublicKey]:
    """The node's public keys by checkpoint key id (hex SHA-256), current and retired."""
    found: dict[str, Ed25519PublicKey] = {}
    for path in sorted(keys_dir.glob("*.pem")):
        try:
            private = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError):
            continue
        public = private.public_key()
        if isinstance(public, Ed25519PublicKey):
            found[key_id_for(public)] = public
    return found


def check_log(engine: Engine, *, public_keys: dict[str, Ed25519PublicKey]) -> LogStatus:
    """Check the stored log against its newest checkpoint; return what was verified.

    Raises LogIntegrityError, whose message says what is wrong and that the node refuses
    to serve.
    """
    with reading(engine) as conn:
        # Checkpoint before head before entries: later appends only add, never contradict.
        signed = latest_checkpoint(conn)
        head = read_head(conn)
        if head is None:
            raise _refuse("the audit log has no head row")
        if signed is not None:
            _check_signature(signed, head.node_id, public_keys)
        covered = 0 if signed is None else signed.checkpoint.tree_size
        frontier = Frontier()
        previous = GENESIS_PREV.encode()
        rows = conn.execute(
            select(audit_entries.c.seq, audit_entries.c.entry, audit_entries.c.leaf_hash)
            .where(audit_entries.c.seq < head.size)
            .order_by(audit_entries.c.seq)
            .execution_options(yield_per=10_000)
        )
        for seq, entry, stored_leaf in rows:
            data = bytes(entry)
            if seq != frontier.size:
                raise _refuse(f"{_seqs(frontier.size, seq)} missing")
            leaf = hashlib.sha256(b"\x00" + data).digest()
            if leaf != bytes(stored_leaf):
                raise _refuse(f"entry seq {seq} no longer matches its leaf hash: it was modified")
            at = data.find(_PREV) + len(_PREV)
            if at < len(_PREV) or data[at : at + 64] != previous:
                raise _refuse(f"entry seq {seq} does not chain to entry seq {seq - 1}")
            previous = leaf.hex().encode()
            frontier.append(leaf)
            if frontier.size == covered and signed is not None:
                _check_root(frontier, signed)
                _check_stored_edge(conn, frontier)
        if covered == 0 and signed is not None:
            _check_root(Frontier(), signed)
        if frontier.size < covered and signed is not None:
            raise _refuse(
                f"the log was cut short: {_describe(signed)} covers {covered} entries but the "
                f"database holds {frontier.size}; {_seqs(frontier.size, covered)} gone"
            )
        if frontier.size != head.size:
            raise _refuse(f"the head row counts {head.size} entries but {frontier.size} are stored")
        if (head.last_leaf is None) != (head.size == 0) or (
            head.last_leaf is not None and bytes(head.last_leaf).hex().encode() != previous
        ):
            raise _refuse("the head row's last leaf hash does not match the last entry")
    return LogStatus(
        entries=head.size,
        checkpoint_size=None if signed is None else covered,
        root_hash=None if signed is None else signed.checkpoint.root_hash,
    )


def _check_signature(
    signed: SignedCheckpoint, node_id: str, public_keys: dict[str, Ed25519PublicKey]
) -> None:
    checkpoint = signed.checkpoint
    if checkpoint.node_id != node_id:
        raise _refuse(f"{_describe(signed)} was signed for node {checkpoint.node_id!r}")
    key = public_keys.get(checkpoint.key_id)
    if key is None:
        raise _refuse(f"{_describe(signed)} names key {checkpoint.key_id}, which this node lacks")
    try:
        verify_checkpoint(key, signed)
    except InvalidCheckpointError:
        raise _refuse(f"{_describe(signed)} has a signature that does not verify") from None


def _check_root(frontier: Frontier, signed: SignedCheckpoint) -> None:
    if frontier.root().hex() != signed.checkpoint.root_hash:
        raise _refuse(
            f"the log was rewritten: its first {frontier.size} entries do not match the root "
            f"signed in {_describe(signed)}"
        )


def _check_stored_edge(conn: Connection, frontier: Frontier) -> None:
    """The next checkpoint extends these stored subtrees: they must be the recomputed ones."""
    inner = [(h, j, value) for h, j, value in frontier.edge if h > 0]
    try:
        stored = tree.fetch(conn, [(h, j) for h, j, _ in inner])
    except LogIntegrityError as exc:
        raise _refuse(str(exc)) from None
    for h, j, value in inner:
        if stored[(h, j)] != value:
            raise _refuse(f"the stored Merkle subtree (height {h}, index {j}) was altered")


def _describe(signed: SignedCheckpoint) -> str:
    checkpoint = signed.checkpoint
    return f"the checkpoint of size {checkpoint.tree_size} signed at {checkpoint.time:%Y-%m-%d %H:%M:%S}Z"


def _seqs(start: int, stop: int) -> str:
    """Name entries ``start..stop-1`` with their verb: 'entry seq 3 is', 'entries seq 3..5 are'."""
    if stop - start == 1:
        return f"entry seq {start} is"
    return f"entries seq {start}..{stop - 1} are"


def _refuse(why: str) -> LogIntegrityError:
    return LogIntegrityError(f"refusing to serve: {why}")
