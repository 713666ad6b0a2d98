"""Witnessing: keep each peer's checkpoints and catch a peer that rewrites its history.

A node can rewrite its own log and re-sign it (it holds its key), or restore an old backup:
the start-up check and an auditor holding nothing older cannot tell. Its peers can. Each
node records every checkpoint a peer shows it (in the peer's descriptor and signed
responses) and checks it against the last one it accepted from that peer:

* a larger tree must come with a consistency proof from the last accepted size, which must
  verify (the new log extends the old one);
* the same size must have the same root;
* a smaller tree signed *later* than the last accepted one is a rollback; a smaller tree
  signed earlier is an old checkpoint arriving late: ignored unless a proof shows it
  conflicts.

A peer that restored a backup and lost entries for good may have declared a new epoch
(`nodes.audit.epoch`): a statement, signed with its key, naming the checkpoint it can no
longer extend. A checkpoint that would be flagged is accepted as a declared gap (verdict
``epoch``) only when the peer shows such a statement naming **exactly** the last checkpoint
accepted from it (size, root, time), signed by the key that signs its checkpoints, with a
consistency proof that the new checkpoint extends the restored tree the statement names.
The gap is kept (the statement in the row's reason), written to this node's own audit log
(``peer.epoch``) and reported by `declared_epochs`; from then on the peer is witnessed from
the new checkpoint. Anything less (no statement, another checkpoint named, a bad signature
or proof) is flagged as before: a silent rollback and a declared, signed gap look different.

A peer that fails is **flagged**: the verdict and both signed lines are kept (they are
signed evidence another node can check), an entry goes into this node's own audit log, and
`flagged_peers` reports it (``/readyz`` details, ``exchange peer list``). A flag stays: a
node that once showed two histories cannot be trusted again without a human looking.

The transport (which response carries which checkpoint, and how the peer is told the size
to prove from: `last_accepted`) belongs to the federation layer; everything here is
storage and decisions, tested with in-process logs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Connection, Engine, func, insert, select

from nodes.audit.checkpoint import SignedCheckpoint, parse_signed_checkpoint, verify_checkpoint
from nodes.audit.checkpoint_store import connected
from nodes.audit.epoch import EpochError, EpochStatement
from nodes.audit.errors import InvalidCheckpointError, InvalidProofError
from nodes.audit.log import append
from nodes.audit.merkle import verify_consistency
from nodes.audit.tables import audit_peer_checkpoints

Verdict = Literal["first", "consistent", "unchanged", "stale", "flagged", "epoch"]
_ACCEPTED: tuple[Verdict, ...] = ("first", "consistent", "epoch")


@dataclass(frozen=True, slots=True)
class WitnessResult:
    """What this node concluded about one checkpoint from a peer."""

    peer_id: str
    tree_size: int
    verdict: Verdict
    reason: str

    @property
    def flagged(self) -> bool:
        return self.verdict == "flagged"


@dataclass(frozen=True, slots=True)
class ServedEpoch:
    """An epoch statement as a peer serves it, with the consistency proof from the restored
    tree it names to the checkpoint served beside it (None if the peer gave none)."""

    statement: EpochStatement
    proof: Sequence[bytes] | None


@dataclass(frozen=True, slots=True)
class DeclaredEpoch:
    """A new epoch a peer declared and this node accepted: the gap, for operators and
    auditors (``reason`` holds the signed statement)."""

    peer_id: str
    accepted_at: datetime
    tree_size: int
    reason: str


@dataclass(frozen=True, slots=True)
class FlaggedPeer:
    """A peer caught showing an inconsistent history; ``evidence`` is the signed line."""

    peer_id: str
    first_flagged: datetime
    flags: int
    reason: str
    evidence: bytes


def last_accepted(conn_or_engine: Connection | Engine, peer_id: str) -> SignedCheckpoint | None:
    """The last checkpoint accepted from ``peer_id``: ask the peer to prove from its size.

    Accepted checkpoints only grow within an epoch, so the newest row is the largest since
    the peer's last declared epoch (which may be smaller than the one it abandoned).
    """
    with connected(conn_or_engine) as conn:
        line = conn.execute(
            select(audit_peer_checkpoints.c.line)
            .where(
                audit_peer_checkpoints.c.peer_id == peer_id,
                audit_peer_checkpoints.c.verdict.in_(_ACCEPTED),
            )
            .order_by(audit_peer_checkpoints.c.id.desc())
            .limit(1)
        ).scalar()
    return None if line is None else parse_signed_checkpoint(bytes(line))


def record_peer_checkpoint(
    conn: Connection,
    *,
    peer_id: str,
    public_key: Ed25519PublicKey,
    line: bytes,
    proof: Sequence[bytes] | None,
    now: datetime,
    epochs: Sequence[ServedEpoch] = (),
) -> WitnessResult:
    """Check a peer's checkpoint line against the last one accepted from it, and record it.

    ``proof`` is the peer's consistency proof from `last_accepted`'s size to this
    checkpoint's size (needed only when the tree grew); ``epochs`` the epoch statements the
    peer served with it (see the module docstring). Runs in the caller's transaction; a
    flag or an accepted epoch also appends an audit entry there.

    Raises InvalidCheckpointError, recording nothing, if the line is malformed, its
    signature does not verify with ``public_key``, or it names another node: such a line
    is not evidence against the peer. Raises InvalidProofError, recording nothing, if the
    tree grew and no proof was given.
    """
    signed = parse_signed_checkpoint(line)
    checkpoint = verify_checkpoint(signed, public_key)
    if checkpoint.node_id != peer_id:
        raise InvalidCheckpointError(
            f"the checkpoint is for node {checkpoint.node_id!r}, not peer {peer_id!r}"
        )
    previous = last_accepted(conn, peer_id)
    declared, refused = _declared_gap(previous, signed, epochs, public_key)
    if declared is not None:
        verdict: Verdict = "epoch"
        reason = declared
    else:
        try:
            verdict, reason = _judge(previous, signed, proof)
        except InvalidProofError:
            if not refused:
                raise
            verdict, reason = "flagged", "the tree changed without a consistency proof"
        if verdict == "flagged" and refused:
            reason = f"{reason}; {refused}"
    if verdict not in ("stale", "unchanged"):  # only what changes the picture is kept
        conn.execute(
            insert(audit_peer_checkpoints).values(
                peer_id=peer_id,
                tree_size=checkpoint.tree_size,
                root_hash=checkpoint.root_hash,
                time=checkpoint.time,
                received_at=now,
                line=signed.to_line(),
                verdict=verdict,
                reason=reason,
            )
        )
    if verdict == "flagged":
        append(
            conn,
            actor=f"partner:{peer_id}",
            role="partner",
            action="peer.flagged",
            resource=f"partner:{peer_id}/checkpoint:{checkpoint.tree_size}",
            outcome="flagged",
            reason=reason,
            partner=peer_id,
            now=now,
        )
    if verdict == "epoch":
        append(
            conn,
            actor=f"partner:{peer_id}",
            role="partner",
            action="peer.epoch",
            resource=f"partner:{peer_id}/checkpoint:{checkpoint.tree_size}",
            outcome="allowed",
            reason=reason.split("; statement ", 1)[0][:2048],
            partner=peer_id,
            now=now,
        )
    return WitnessResult(peer_id, checkpoint.tree_size, verdict, reason)


def _declared_gap(
    previous: SignedCheckpoint | None,
    new: SignedCheckpoint,
    epochs: Sequence[ServedEpoch],
    public_key: Ed25519PublicKey,
) -> tuple[str | None, str]:
    """(the reason to accept ``new`` as a declared new epoch, or None; why a statement that
    named ``previous`` was refused, or "")."""
    if previous is None:
        return None, ""
    refused = ""
    for served in epochs:
        statement = served.statement
        if not statement.names(previous):
            continue
        fields = statement.fields
        try:
            statement.verify(public_key)
            if fields["node_id"] != new.checkpoint.node_id:
                raise EpochError("the epoch statement names another node")
            verify_consistency(
                fields["restored_tree_size"],
                new.checkpoint.tree_size,
                bytes.fromhex(fields["restored_root_hash"]),
                bytes.fromhex(new.checkpoint.root_hash),
                served.proof or [],
            )
        except (EpochError, InvalidProofError) as exc:
            refused = f"an epoch statement naming that checkpoint was refused: {exc}"
            continue
        old = previous.checkpoint
        return (
            f"new epoch declared by the peer: it cannot extend its checkpoint of tree size "
            f"{old.tree_size} (root {old.root_hash}) this node held; entries seq "
            f"{fields['restored_tree_size']}..{old.tree_size - 1} ({fields['entries_lost']}) "
            f"were lost; its log goes on from tree size {fields['restored_tree_size']} "
            f"(root {fields['restored_root_hash']}), declared {fields['time']} "
            f"({statement.digest}); statement {json.dumps(statement.to_json())}"
        ), ""
    return None, refused


def _judge(
    previous: SignedCheckpoint | None, new: SignedCheckpoint, proof: Sequence[bytes] | None
) -> tuple[Verdict, str]:
    """Decide on ``new`` given the last accepted checkpoint. Raises InvalidProofError."""
    size, root = new.checkpoint.tree_size, bytes.fromhex(new.checkpoint.root_hash)
    if previous is None:
        return "first", f"first checkpoint seen from this peer (tree size {size})"
    old = previous.checkpoint
    old_size, old_root = old.tree_size, bytes.fromhex(old.root_hash)
    if size == old_size:
        if root == old_root:
            return "unchanged", f"same tree head as before (tree size {size})"
        return "flagged", (
            f"two different roots signed for tree size {size}: the peer shows different "
            "histories (split view) or rewrote its log"
        )
    if size < old_size:
        if new.checkpoint.time > old.time:
            return "flagged", (
                f"rolled back: tree size {size} signed after tree size {old_size} "
                "(a log never shrinks; restored from a backup or cut short?)"
            )
        if proof is None:
            return "stale", f"an older checkpoint (tree size {size}) arriving late"
        return _check_proof(size, old_size, root, old_root, proof, stale_ok=True)
    if proof is None and old_size == 0:
        proof = ()  # every tree extends the empty one (RFC 9162): the proof is empty
    if proof is None:
        raise InvalidProofError(
            f"the peer's tree grew from {old_size} to {size}: a consistency proof is needed"
        )
    return _check_proof(old_size, size, old_root, root, proof, stale_ok=False)


def _check_proof(
    first: int,
    second: int,
    first_root: bytes,
    second_root: bytes,
    proof: Sequence[bytes],
    *,
    stale_ok: bool,
) -> tuple[Verdict, str]:
    try:
        verify_consistency(first, second, first_root, second_root, proof)
    except InvalidProofError:
        return "flagged", (
            f"the tree of size {second} does not extend the tree of size {first} this node "
            "saw before: the peer rewrote its history or shows different histories"
        )
    if stale_ok:
        return "stale", f"an older checkpoint (tree size {first}), consistent with the last"
    return "consistent", f"extends the last accepted checkpoint (tree size {first} to {second})"


def declared_epochs(conn_or_engine: Connection | Engine) -> list[DeclaredEpoch]:
    """Every new epoch a peer declared and this node accepted, oldest first."""
    table = audit_peer_checkpoints
    with connected(conn_or_engine) as conn:
        rows = conn.execute(
            select(table.c.peer_id, table.c.received_at, table.c.tree_size, table.c.reason)
            .where(table.c.verdict == "epoch")
            .order_by(table.c.id)
        ).all()
    return [
        DeclaredEpoch(
            peer_id=row.peer_id,
            accepted_at=row.received_at,
            tree_size=int(row.tree_size),
            reason=row.reason,
        )
        for row in rows
    ]


def flagged_peers(conn_or_engine: Connection | Engine) -> list[FlaggedPeer]:
    """Every peer ever flagged, with its first flag's time, count, reason and evidence."""
    table = audit_peer_checkpoints
    with connected(conn_or_engine) as conn:
        firsts = (
            select(table.c.peer_id, func.min(table.c.id).label("first_id"), func.count().label("n"))
            .where(table.c.verdict == "flagged")
            .group_by(table.c.peer_id)
            .subquery()
        )
        rows = conn.execute(
            select(table.c.peer_id, table.c.received_at, table.c.reason, table.c.line, firsts.c.n)
            .join(firsts, table.c.id == firsts.c.first_id)
            .order_by(table.c.peer_id)
        ).all()
    return [
        FlaggedPeer(
            peer_id=row.peer_id,
            first_flagged=row.received_at,
            flags=int(row.n),
            reason=row.reason,
            evidence=bytes(row.line),
        )
        for row in rows
    ]
