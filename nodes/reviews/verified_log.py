"""The audit log as reviews read it: verified first, then only the entries a review wants.

A review (after-action, transparency) must never be written from a log that does not
verify, so every entry a review reads has passed the standalone offline verifier
(`nodes.audit.verifier`) in the same pass: the export's lines go through the verifier and,
beside it, the entry lines a review wants are parsed and kept. Nothing is returned unless
the whole export verified; the log is streamed, so only the kept entries are held.

Two sources give the same lines: an export file an auditor holds (`from_export`), and a
node's own database (`from_node`), streamed in the export format after a checkpoint covering
every entry has been signed, and verified from the node's first key, so a log changed behind
the node's back (a row edited in the database) is refused exactly as in an export.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from nodes import keys
from nodes.audit import checkpoint_store, export, verifier
from nodes.audit.vocabulary import normalize
from nodes.identity import b64url_decode, load_current, load_key
from nodes.node import Node

#: Entries a review keeps: normalized (`nodes.audit.vocabulary.normalize`), with ``seq``.
Wanted = Callable[[dict[str, Any]], bool]


@dataclass(frozen=True)
class VerifiedLog:
    """What the verifier established, every checkpoint in the export, and the kept entries
    (normalized, in seq order); ``keys``: the anchor and every key the export's key lines
    endorsed, by key id: the keys the verifier trusted, so a review signed by one of them
    can be checked with it."""

    verified: verifier.VerifiedExport
    checkpoints: tuple[verifier.Checkpoint, ...]
    entries: tuple[dict[str, Any], ...]
    keys: Mapping[str, Ed25519PublicKey] = field(default_factory=dict)

    @property
    def node_id(self) -> str:
        return self.verified.node_id

    def checkpoint(self, tree_size: int, root_hash: str) -> verifier.Checkpoint | None:
        """The export's checkpoint of that size and root, if it holds one."""
        return next(
            (c for c in self.checkpoints if c.tree_size == tree_size and c.root_hash == root_hash),
            None,
        )


def read(
    lines: Iterable[bytes], anchor: Ed25519PublicKey, *, wanted: Wanted = lambda _e: True
) -> VerifiedLog:
    """Verify an export given as lines (no newlines) and keep the wanted entries.

    Raises verifier.VerificationError naming what failed; nothing is kept then.
    """
    kept: list[dict[str, Any]] = []
    checkpoints: list[verifier.Checkpoint] = []
    trusted = {verifier.key_id(anchor): anchor}

    def tee() -> Iterator[bytes]:
        for number, line in enumerate(lines, start=1):
            yield line
            if line.startswith(verifier.CHECKPOINT_PREFIX):
                checkpoints.append(verifier.parse_checkpoint_line(line, number))
            elif line.startswith(verifier.KEY_PREFIX):
                _trust(trusted, line)
            elif line.startswith(b"{") and not line.startswith(
                (verifier.KEY_PREFIX, verifier.EXPORT_HEADER)
            ):
                entry = _entry(line)
                if entry is not None and wanted(entry):
                    kept.append(entry)

    verified = verifier.verify_export(tee(), anchor)
    return VerifiedLog(verified, tuple(checkpoints), tuple(kept), trusted)


def from_export(path: Path, anchor: Ed25519PublicKey, *, wanted: Wanted) -> VerifiedLog:
    """Verify an export file and keep the wanted entries.

    Raises OSError if it cannot be read, verifier.VerificationError if it does not verify.
    """
    with path.open("rb") as handle:
        return read(_lines(handle), anchor, wanted=wanted)


def from_node(node: Node, *, now: datetime, wanted: Wanted) -> VerifiedLog:
    """The node's own log, verified from its first key; signs a checkpoint first when
    entries are not yet covered by one (the checkpoint tick would, a little later).

    Raises verifier.VerificationError if the log does not verify, and
    nodes.audit.errors.LogIntegrityError if the node refuses to sign over a damaged log.
    """
    final = checkpoint_store.sign(node.engine, node.key.private_key, now=now, force=False)
    key_lines = export.key_lines(node.settings.keys_dir, node_id=node.settings.node_id)
    chunks = export.stream(node.engine, final, key_lines)
    return read(_lines_of_chunks(chunks), first_key(node.settings.keys_dir), wanted=wanted)


def first_key(keys_dir: Path) -> Ed25519PublicKey:
    """The node's original key: the one no other key endorsed (the current key when the
    node never rotated). Every later key is trusted through the export's key lines."""
    kid = keys.first_kid(keys_dir)
    return load_current(keys_dir).public_key if kid is None else load_key(keys_dir, kid).public_key


def _trust(trusted: dict[str, Ed25519PublicKey], line: bytes) -> None:
    """Note a key line's key. Only kept if the whole export verifies, and the verifier
    accepts a key line only when a trusted key endorsed it or it names a key already
    trusted, with a key id that is the SHA-256 of its public key."""
    try:
        public = json.loads(line)["key"]["public_key"]
        key = Ed25519PublicKey.from_public_bytes(b64url_decode(str(public)))
    except (ValueError, KeyError, TypeError):
        return  # the verifier names it
    trusted[verifier.key_id(key)] = key


def _entry(line: bytes) -> dict[str, Any] | None:
    try:
        parsed = json.loads(line)
    except ValueError:
        return None  # the verifier names it
    if not isinstance(parsed, dict) or "action" not in parsed or "seq" not in parsed:
        return None
    try:
        return normalize(parsed)
    except (KeyError, TypeError, AttributeError):
        return None


def _lines(handle: BinaryIO) -> Iterator[bytes]:
    return _lines_of_chunks(iter(lambda: handle.read(1 << 20), b""))


def _lines_of_chunks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    rest = b""
    for chunk in chunks:
        parts = (rest + chunk).split(b"\n")
        rest = parts.pop()
        yield from parts
    if rest:
        yield rest
