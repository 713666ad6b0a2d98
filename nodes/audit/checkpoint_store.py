"""Signing checkpoints and reading them back: the node's signed statements of its tree head.

Checkpoints live in the database, so every worker and replica sees the same latest one and
none of them needs the tree in memory. Signing extends the stored Merkle subtrees
(`nodes.audit.tree.extend`) and the filter index (`nodes.audit.lookup`) to the new size in
the same transaction that stores the checkpoint, so both always cover exactly the largest
checkpoint: the bookkeeping happens here, once a minute, not on every append.

Signers serialize on a PostgreSQL advisory lock (SQLite writers on the database lock), not
on the head row: appends keep running while a checkpoint is signed. The size signed is the
committed head, whose entries are all committed and immutable.

The node never signs a tree that does not extend the newest checkpoint it ever signed: when
the node was opened with an anchor (`nodes.audit.anchor`), `sign` checks the tree against
it and writes the new checkpoint to it before committing, with the ledger's spent totals
as this transaction sees them (signed, `nodes.audit.anchor.ledger_bytes`): a restored
backup can then never give back budget spent before the newest checkpoint.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Connection, Engine, insert, select, text
from sqlalchemy.exc import IntegrityError

from nodes import ledger
from nodes.audit import anchor, lookup, tree
from nodes.audit.checkpoint import (
    SignedCheckpoint,
    parse_signed_checkpoint,
    sign_checkpoint,
)
from nodes.audit.errors import LogIntegrityError, LogNotInitializedError
from nodes.audit.log import read_head
from nodes.audit.tables import audit_checkpoints
from nodes.database import reading, writing
from nodes.identity import key_id

_SIGNER_LOCK = zlib.crc32(b"crisis-exchange/audit-signer")


@contextmanager
def connected(conn_or_engine: Connection | Engine) -> Iterator[Connection]:
    """Use the caller's connection (and transaction) or open a read transaction."""
    if isinstance(conn_or_engine, Connection):
        yield conn_or_engine
    else:
        with reading(conn_or_engine) as conn:
            yield conn


def latest_checkpoint(conn_or_engine: Connection | Engine) -> SignedCheckpoint | None:
    """The checkpoint covering the most entries (the newest of those), or None if none yet.

    This is what the node publishes in its descriptor and signed responses for witnesses.
    """
    with connected(conn_or_engine) as conn:
        line = conn.execute(
            select(audit_checkpoints.c.line)
            .order_by(audit_checkpoints.c.tree_size.desc(), audit_checkpoints.c.id.desc())
            .limit(1)
        ).scalar()
    return None if line is None else parse_signed_checkpoint(bytes(line))


def checkpoints_up_to(conn: Connection, size: int) -> Iterator[SignedCheckpoint]:
    """Every stored checkpoint covering at most ``size`` entries, smallest first."""
    rows = conn.execute(
        select(audit_checkpoints.c.line)
        .where(audit_checkpoints.c.tree_size <= size)
        .order_by(audit_checkpoints.c.tree_size, audit_checkpoints.c.id)
    )
    for (line,) in rows:
        yield parse_signed_checkpoint(bytes(line))


def sign(
    engine: Engine, private_key: Ed25519PrivateKey, *, now: datetime, force: bool = True
) -> SignedCheckpoint:
    """Sign and store a checkpoint of every committed entry; return it.

    With ``force=False`` the latest checkpoint is returned as it is when it already covers
    every entry. Raises LogIntegrityError if the log is shorter than a checkpoint already
    signed (it was cut), does not extend the anchored checkpoint (rewritten or rolled back),
    an entry is missing, or the stored subtrees or lookup index hold rows beyond the latest
    checkpoint (damaged tables); nothing is signed then.
    """
    try:
        return _sign(engine, private_key, now=now, force=force)
    except IntegrityError:
        raise LogIntegrityError(
            "refusing to sign: the stored Merkle subtrees or lookup index already hold rows "
            "beyond the latest checkpoint (the audit tables were damaged); restart the node "
            "to have its start-up check say what is wrong"
        ) from None


def _sign(
    engine: Engine, private_key: Ed25519PrivateKey, *, now: datetime, force: bool
) -> SignedCheckpoint:
    anchor_path = anchor.attached(engine)
    with writing(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _SIGNER_LOCK})
        head = read_head(conn)
        if head is None:
            raise LogNotInitializedError("the audit log has no head row; open the node first")
        latest = latest_checkpoint(conn)
        covered = 0 if latest is None else latest.checkpoint.tree_size
        if head.size < covered:
            raise LogIntegrityError(
                f"the log holds {head.size} entries but checkpoint {covered} was signed: "
                "it was cut short"
            )
        held = None if anchor_path is None else anchor.read(anchor_path)
        if held is not None and head.size < held.checkpoint.tree_size:
            raise LogIntegrityError(
                f"refusing to sign: the log holds {head.size} entries but "
                f"{anchor.describe(held, anchor_path or Path())} covers "
                f"{held.checkpoint.tree_size}: it was cut short or rolled back"
            )
        if latest is not None and not force and covered == head.size:
            _check_extends(conn, held, anchor_path)
            _keep(conn, anchor_path, held, latest, private_key)
            return latest
        root_hash = tree.extend(conn, covered, head.size)
        lookup.index_entries(conn, covered, head.size)
        _check_extends(conn, held, anchor_path)
        signed = sign_checkpoint(
            private_key,
            tree_size=head.size,
            root_hash=root_hash,
            time=now,
            node_id=head.node_id,
        )
        conn.execute(
            insert(audit_checkpoints).values(
                tree_size=head.size,
                root_hash=signed.checkpoint.root_hash,
                time=now,
                key_id=signed.checkpoint.key_id,
                line=signed.to_line(),
            )
        )
        _keep(
            conn, anchor_path, held, signed, private_key
        )  # before commit: the anchor is never behind
        return signed


def _check_extends(
    conn: Connection, held: SignedCheckpoint | None, anchor_path: Path | None
) -> None:
    """Raise LogIntegrityError unless the stored tree extends the anchored checkpoint."""
    if held is None or anchor_path is None:
        return
    size = held.checkpoint.tree_size
    if tree.root_at(conn, size).hex() != held.checkpoint.root_hash:
        raise LogIntegrityError(
            f"refusing to sign: the log's first {size} entries do not match "
            f"{anchor.describe(held, anchor_path)}: they were rewritten"
        )


def _keep(
    conn: Connection,
    anchor_path: Path | None,
    held: SignedCheckpoint | None,
    new: SignedCheckpoint,
    private_key: Ed25519PrivateKey,
) -> None:
    if anchor_path is None:
        return
    if held is None or (new.checkpoint.tree_size >= held.checkpoint.tree_size and new != held):
        # The key that signs a new checkpoint signs its ledger; an older latest one was
        # perhaps signed by a retired key, and is then anchored without the ledger.
        same_key = new.checkpoint.key_id == key_id(private_key.public_key())
        totals = ledger.accounts(conn) if same_key else None
        anchor.write(anchor_path, new, ledger=totals, private_key=private_key)


def sign_if_due(
    engine: Engine, private_key: Ed25519PrivateKey, *, now: datetime
) -> SignedCheckpoint | None:
    """Sign a checkpoint if entries were appended since the last one; else return None.

    Called every ``checkpoint_interval_seconds`` by each worker: whichever comes first signs,
    the others find nothing new. No activity, no checkpoint.
    """
    with reading(engine) as conn:
        head = read_head(conn)
        latest = latest_checkpoint(conn)
    if head is None:
        return None
    if latest is not None and latest.checkpoint.tree_size >= head.size:
        return None
    return sign(engine, private_key, now=now, force=False)
