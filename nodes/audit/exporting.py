"""Exporting the whole log, for the API and the CLI alike.

An export is taken in two steps so a stream never fails half-way for a reason known up
front: `prepare` logs the export itself and signs a checkpoint covering every entry (that
one included) in transactions of their own; `stream` then reads exactly the entries that
checkpoint covers, from one read transaction, and writes them in the verifier's format
(`nodes.audit.export`) with the node's checkpoints after the entries they cover.

Only checkpoints signed with the final checkpoint's key go into the export: the offline
verifier checks an export with one public key, and the final checkpoint alone covers
every entry.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, select

from nodes.audit import signer
from nodes.audit.checkpoint import SignedCheckpoint
from nodes.audit.export import export_lines
from nodes.audit.log import append
from nodes.audit.tables import audit_entries
from nodes.database import reading, writing

#: Bytes per chunk handed to the HTTP response or file.
CHUNK = 1 << 16


def prepare(
    engine: Engine, private_key: Ed25519PrivateKey, *, actor: str, role: str, now: datetime
) -> SignedCheckpoint:
    """Log the export and sign a checkpoint covering it; return that checkpoint."""
    with writing(engine) as conn:
        append(
            conn,
            actor=actor,
            role=role,
            action="audit.export",
            resource="audit-log",
            outcome="allowed",
            reason="export of the whole log with its signed checkpoints",
            now=now,
        )
    return signer.sign(engine, private_key, now=now, force=False)


def stream(engine: Engine, final: SignedCheckpoint) -> Iterator[bytes]:
    """The export's bytes in chunks: every entry ``final`` covers, then ``final`` last."""
    size = final.checkpoint.tree_size
    key_id = final.checkpoint.key_id
    with reading(engine) as conn:
        checkpoints = [
            c for c in signer.checkpoints_up_to(conn, size) if c.checkpoint.key_id == key_id
        ]
        rows = conn.execute(
            select(audit_entries.c.entry)
            .where(audit_entries.c.seq < size)
            .order_by(audit_entries.c.seq)
            .execution_options(yield_per=5000)
        )
        entries = (bytes(entry) for (entry,) in rows)
        buffer: list[bytes] = []
        filled = 0
        for line in export_lines(entries, checkpoints):
            buffer.append(line)
            filled += len(line)
            if filled >= CHUNK:
                yield b"".join(buffer)
                buffer, filled = [], 0
        if buffer:
            yield b"".join(buffer)
