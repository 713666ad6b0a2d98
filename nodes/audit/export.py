"""Exporting the whole log, for the API and the CLI alike.

An export is taken in two steps so a stream never fails half-way for a reason known up
front: `prepare` logs the export itself and signs a checkpoint covering every entry (that
one included) in transactions of their own; `stream` then reads exactly the entries that
checkpoint covers, from one read transaction, and writes them in the verifier's format
(`nodes.audit.export_format`) with the node's checkpoints after the entries they cover.

Every checkpoint goes into the export, whichever of the node's keys signed it, with the
node's key endorsements (`key_lines`) after the header: the verifier follows the chain from
the key the auditor trusts to the keys that signed later checkpoints.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, select

from nodes import keys
from nodes.audit import checkpoint_store, verifier
from nodes.audit.checkpoint import SignedCheckpoint
from nodes.audit.export_format import export_lines
from nodes.audit.log import append
from nodes.audit.tables import audit_entries
from nodes.audit.vocabulary import Role
from nodes.database import reading, writing
from nodes.identity import b64url_decode, load_key, public_key_text
from nodes.times import utc_text

#: Bytes per chunk handed to the HTTP response or file.
CHUNK = 1 << 16


def prepare(
    engine: Engine, private_key: Ed25519PrivateKey, *, actor: str, role: Role, now: datetime
) -> SignedCheckpoint:
    """Log the export and sign a checkpoint covering it; return that checkpoint."""
    with writing(engine) as conn:
        append(
            conn,
            actor=actor,
            role=role,
            action="audit.export",
            resource="log:audit",
            outcome="allowed",
            reason="export of the whole log with its signed checkpoints",
            now=now,
        )
    return checkpoint_store.sign(engine, private_key, now=now, force=False)


def key_lines(keys_dir: Path, *, node_id: str) -> list[bytes]:
    """The node's key endorsements as export key lines, oldest rotation first.

    Each is ``{"key":STATEMENT,"signature":"SIG"}``: the statement the previous key signed
    (`nodes.keys.endorsement_bytes`, in the spelling that verifies: rotations made before
    times had one spelling used another) and that signature in standard base64. Keys past
    their grace period are included: they signed checkpoints the export holds.
    """
    ring_file = keys_dir / keys.KEYRING
    if not ring_file.is_file():
        return []
    node_keys = {p.stem: load_key(keys_dir, p.stem).public_key for p in keys_dir.glob("*.pem")}
    ring: dict[str, dict[str, object]] = json.loads(ring_file.read_text())["keys"]
    lines: list[tuple[datetime, bytes]] = []
    for kid, entry in ring.items():
        endorsed = entry.get("endorsement")
        if not isinstance(endorsed, dict) or kid not in node_keys:
            continue
        endorser = node_keys.get(str(endorsed["by"]))
        valid_from = datetime.fromisoformat(str(entry["valid_from"]))
        until = datetime.fromisoformat(str(endorsed["previous_valid_until"]))
        signature = b64url_decode(str(endorsed["signature"]))
        for spell in (utc_text, _legacy_time):
            statement = keys.endorsement_bytes(
                node_id=node_id,
                kid=kid,
                public_key=public_key_text(node_keys[kid]),
                valid_from=valid_from,
                previous_kid=str(endorsed["by"]),
                previous_valid_until=until,
                spell=spell,
            )
            try:
                if endorser is not None:
                    endorser.verify(signature, statement)
            except InvalidSignature:
                continue
            line = (
                verifier.KEY_PREFIX
                + statement
                + verifier.SIGNATURE_SEPARATOR
                + base64.b64encode(signature)
                + verifier.CHECKPOINT_SUFFIX
            )
            lines.append((valid_from, line))
            break
    return [line for _when, line in sorted(lines)]


def _legacy_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def stream(
    engine: Engine, final: SignedCheckpoint, key_lines: Sequence[bytes] = ()
) -> Iterator[bytes]:
    """The export's bytes in chunks: key lines, every entry ``final`` covers, ``final`` last."""
    size = final.checkpoint.tree_size
    with reading(engine) as conn:
        checkpoints = list(checkpoint_store.checkpoints_up_to(conn, size))
        rows = conn.execute(
            select(audit_entries.c.entry)
            .where(audit_entries.c.seq < size)
            .order_by(audit_entries.c.seq)
            .execution_options(yield_per=5000)
        )
        entries = (bytes(entry) for (entry,) in rows)
        buffer: list[bytes] = []
        filled = 0
        for line in export_lines(entries, checkpoints, key_lines):
            buffer.append(line)
            filled += len(line)
            if filled >= CHUNK:
                yield b"".join(buffer)
                buffer, filled = [], 0
        if buffer:
            yield b"".join(buffer)
