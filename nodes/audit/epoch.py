"""A new epoch of the log: the signed statement a node makes when it lost entries for good.

A restore without an export covering the anchored checkpoint leaves a log that cannot extend
that checkpoint: its entries after the backup are gone. Rather than pretend, the operator
may declare a new epoch (`declare`, ``exchange restore BACKUP DIR --new-epoch``): the node
signs a statement naming the checkpoint it can no longer extend (size, root, time), the
restored log it goes on from (size, root), the number of entries lost and the time; appends
an ``audit.epoch`` entry carrying the statement's SHA-256; signs a checkpoint covering that
entry and makes it the new anchor. The node then starts and its log grows from there.

The statement is RFC 8785 JSON of flat fields (like a checkpoint), signed with the node's
Ed25519 key over those exact bytes, and kept in ``DIR/keys/audit-epochs.jsonl`` beside the
anchor, one ``{"statement":...,"signature":...}`` per line: like the anchor, it outlives any
later restore of the database. The node serves every statement with its checkpoint
(`exchange.signing.witnessing`, ``GET /v1/audit/checkpoint``); a witness that held the abandoned
checkpoint accepts the declared gap instead of flagging (`nodes.audit.witness`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import Connection, Engine, select

from nodes import identity, ledger
from nodes.audit import anchor, checkpoint_store
from nodes.audit.canonical import canonical_json, check_count, check_hex64, format_time, parse_time
from nodes.audit.checkpoint import SignedCheckpoint
from nodes.audit.errors import AuditError, LogIntegrityError
from nodes.audit.log import append, read_head
from nodes.audit.merkle import Frontier
from nodes.audit.tables import audit_entries
from nodes.database import reading, writing

EPOCHS_FILE = "audit-epochs.jsonl"
STATEMENT_TYPE = "crisis-exchange/audit-epoch/v1"
_FIELDS = frozenset(
    {"type", "node_id", "key_id", "time", "entries_lost"}
    | {"abandoned_tree_size", "abandoned_root_hash", "abandoned_time"}
    | {"restored_tree_size", "restored_root_hash"}
)


class EpochError(AuditError):
    """An epoch statement is malformed, or its signature does not verify."""


@dataclass(frozen=True, slots=True)
class EpochStatement:
    """A signed epoch statement: the exact bytes signed, and the signature over them."""

    body: bytes
    signature: bytes

    @property
    def fields(self) -> dict[str, Any]:
        """The statement's fields (parsed; `parse` checked their shape)."""
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed

    @property
    def digest(self) -> str:
        """``sha256:HEX`` of the signed bytes: what the ``audit.epoch`` entry names."""
        return "sha256:" + hashlib.sha256(self.body).hexdigest()

    def to_json(self) -> dict[str, str]:
        """The wire and file form: the signed bytes as a string, the signature in base64."""
        return {
            "statement": self.body.decode(),
            "signature": base64.b64encode(self.signature).decode(),
        }

    def names(self, signed: SignedCheckpoint) -> bool:
        """Whether this statement abandons exactly ``signed`` (size, root and time)."""
        c, f = signed.checkpoint, self.fields
        return (f["abandoned_tree_size"], f["abandoned_root_hash"], f["abandoned_time"]) == (
            c.tree_size,
            c.root_hash,
            format_time(c.time),
        )

    def verify(self, public_key: Ed25519PublicKey) -> None:
        """Raise EpochError unless ``public_key`` signed these exact bytes."""
        try:
            public_key.verify(self.signature, self.body)
        except InvalidSignature:
            raise EpochError("the epoch statement's signature does not verify") from None


def parse(obj: object) -> EpochStatement:
    """An epoch statement from its wire form, shape checked, signature not (`verify`).

    Raises EpochError if it is not a statement in canonical form with the fields above.
    """
    try:
        assert isinstance(obj, Mapping)
        body = str(obj["statement"]).encode()
        signature = base64.b64decode(str(obj["signature"]), validate=True)
        fields = json.loads(body)
        assert isinstance(fields, dict)
        assert fields.keys() == _FIELDS
        assert fields["type"] == STATEMENT_TYPE
        for name in ("abandoned_tree_size", "restored_tree_size", "entries_lost"):
            check_count(name, fields[name])
        for name in ("abandoned_root_hash", "restored_root_hash"):
            check_hex64(name, fields[name])
        for name in ("abandoned_time", "time"):
            parse_time(fields[name])
        assert fields["entries_lost"] == (
            fields["abandoned_tree_size"] - fields["restored_tree_size"]
        )
        assert canonical_json(fields) == body
    except (AssertionError, KeyError, TypeError, ValueError):
        raise EpochError("not an epoch statement in canonical form") from None
    return EpochStatement(body=body, signature=signature)


def sign_statement(
    private_key: Ed25519PrivateKey,
    *,
    node_id: str,
    abandoned: SignedCheckpoint,
    restored_size: int,
    restored_root: bytes,
    now: datetime,
) -> EpochStatement:
    """Sign the statement that the log goes on from ``restored_size`` and cannot extend
    ``abandoned``."""
    c = abandoned.checkpoint
    body = canonical_json(
        {
            "type": STATEMENT_TYPE,
            "node_id": node_id,
            "key_id": identity.key_id(private_key.public_key()),
            "abandoned_tree_size": c.tree_size,
            "abandoned_root_hash": c.root_hash,
            "abandoned_time": format_time(c.time),
            "restored_tree_size": restored_size,
            "restored_root_hash": restored_root.hex(),
            "entries_lost": c.tree_size - restored_size,
            "time": format_time(now),
        }
    )
    return EpochStatement(body=body, signature=private_key.sign(body))


def path_in(keys_dir: Path) -> Path:
    """Where a node directory's epoch statements live: beside its anchor."""
    return keys_dir / EPOCHS_FILE


def read_all(keys_dir: Path) -> list[EpochStatement]:
    """Every epoch statement this node declared, oldest first ([] if none).

    Raises LogIntegrityError if the file is damaged.
    """
    path = path_in(keys_dir)
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        return []
    try:
        return [parse(json.loads(line)) for line in lines if line.strip()]
    except (ValueError, EpochError):
        raise LogIntegrityError(f"the epoch statements in {path} are damaged") from None


def _keep(keys_dir: Path, statement: EpochStatement) -> None:
    """Append ``statement`` to the file durably (fsync) before anything refers to it."""
    path = path_in(keys_dir)
    line = json.dumps(statement.to_json(), separators=(",", ":")) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


def restored_root(conn: Connection, size: int) -> bytes:
    """The Merkle root of the first ``size`` stored entries, from their leaf hashes."""
    frontier = Frontier()
    rows = conn.execute(
        select(audit_entries.c.leaf_hash)
        .where(audit_entries.c.seq < size)
        .order_by(audit_entries.c.seq)
        .execution_options(yield_per=10_000)
    )
    for (leaf,) in rows:
        frontier.append(bytes(leaf))
    if frontier.size != size:
        raise LogIntegrityError(f"the restored log should hold {size} entries: some are missing")
    return frontier.root()


def declare(
    engine: Engine,
    *,
    keys_dir: Path,
    private_key: Ed25519PrivateKey,
    abandoned: SignedCheckpoint,
    actor: str,
    now: datetime,
) -> EpochStatement:
    """Start a new epoch of ``engine``'s log, which cannot extend ``abandoned`` (the anchor).

    The node must be stopped (a restore does this). Order matters for a crash half-way: the
    statement is kept first, then the entry and its checkpoint commit, then the anchor moves;
    until it has moved the node still refuses to start, and the restore can be run again.
    Raises LogIntegrityError if the log is not shorter than ``abandoned`` (nothing was lost).
    """
    with reading(engine) as conn:
        head = read_head(conn)
        if head is None:
            raise LogIntegrityError("the audit log has no head row")
        lost = abandoned.checkpoint.tree_size - head.size
        if lost <= 0:
            raise LogIntegrityError(
                "the restored log is not shorter than the anchored checkpoint: no epoch needed"
            )
        root = restored_root(conn, head.size)
    statement = sign_statement(
        private_key,
        node_id=head.node_id,
        abandoned=abandoned,
        restored_size=head.size,
        restored_root=root,
        now=now,
    )
    _keep(keys_dir, statement)
    c = abandoned.checkpoint
    with writing(engine) as conn:
        append(
            conn,
            actor=actor,
            role="operator",
            action="audit.epoch",
            resource=f"checkpoint:{c.tree_size}",
            outcome="allowed",
            reason=(
                f"new epoch of the log: the checkpoint of tree size {c.tree_size} (root "
                f"{c.root_hash}, {format_time(c.time)}) cannot be extended; entries seq "
                f"{head.size}..{c.tree_size - 1} ({lost}) were lost with the database and the "
                f"log goes on from the restored tree of size {head.size} (root {root.hex()}); "
                f"signed statement {statement.digest}"
            ),
            now=now,
        )
    signed = checkpoint_store.sign(
        engine, private_key, now=now
    )  # not anchored yet: nothing to extend
    with reading(engine) as conn:
        totals = ledger.accounts(conn)
    anchor.write(anchor.path_in(keys_dir), signed, ledger=totals, private_key=private_key)
    return statement
