"""Signed checkpoints: a node's Ed25519 signature over its log's tree head.

A checkpoint states "my log had ``tree_size`` entries and Merkle root
``root_hash`` at ``time``". The signature covers the canonical RFC 8785 bytes
of those fields plus a ``type`` that names what is signed, so a node key's
signature over a checkpoint can never be replayed as any other signed
object. Peers and auditors keep the latest checkpoint they saw: a later one
must extend it (a consistency proof, or the entries themselves), so a node
that rewrites or rolls back its history is caught.

Parsing and signature checking reuse the standalone verifier's reader, so the
node accepts exactly the checkpoint lines an auditor's copy accepts.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from nodes import identity
from nodes.audit import verifier
from nodes.audit.canonical import (
    canonical_json,
    check_count,
    check_hex64,
    check_text,
    format_time,
    parse_time,
)
from nodes.audit.errors import InvalidCheckpointError, InvalidEntryError
from nodes.audit.merkle import HASH_SIZE

CHECKPOINT_TYPE = verifier.CHECKPOINT_TYPE


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint:
    """An unsigned tree head; holding one means its fields are well-formed."""

    tree_size: int
    root_hash: str
    time: datetime
    node_id: str
    key_id: str

    def __post_init__(self) -> None:
        try:
            check_count("tree_size", self.tree_size)
            check_hex64("root_hash", self.root_hash)
            format_time(self.time)
            check_text("node_id", self.node_id, max_len=128)
            check_text("key_id", self.key_id, max_len=128)
        except InvalidEntryError as exc:
            raise InvalidCheckpointError(f"checkpoint {exc}") from None

    def to_bytes(self) -> bytes:
        """The canonical bytes that are signed."""
        return canonical_json(
            {
                "type": CHECKPOINT_TYPE,
                "tree_size": self.tree_size,
                "root_hash": self.root_hash,
                "time": format_time(self.time),
                "node_id": self.node_id,
                "key_id": self.key_id,
            }
        )


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    """A checkpoint with the exact bytes that were signed and the signature."""

    checkpoint: Checkpoint
    body: bytes
    signature: bytes

    def to_line(self) -> bytes:
        """The export/wire form, without newline: ``{"checkpoint":BODY,"signature":"B64"}``."""
        return (
            verifier.CHECKPOINT_PREFIX
            + self.body
            + verifier.SIGNATURE_SEPARATOR
            + base64.b64encode(self.signature)
            + verifier.CHECKPOINT_SUFFIX
        )


def sign_checkpoint(
    private_key: Ed25519PrivateKey,
    *,
    tree_size: int,
    root_hash: bytes,
    time: datetime,
    node_id: str,
    key_id: str | None = None,
) -> SignedCheckpoint:
    """Sign the tree head ``(tree_size, root_hash)`` of this node's log.

    ``key_id`` defaults to the key id (`nodes.identity.key_id`) of the private key's public half.
    Raises InvalidCheckpointError if a field is malformed.
    """
    if not isinstance(root_hash, bytes) or len(root_hash) != HASH_SIZE:
        raise InvalidCheckpointError("root_hash must be 32 bytes")
    checkpoint = Checkpoint(
        tree_size=tree_size,
        root_hash=root_hash.hex(),
        time=time,
        node_id=node_id,
        key_id=key_id if key_id is not None else identity.key_id(private_key.public_key()),
    )
    body = checkpoint.to_bytes()
    return SignedCheckpoint(checkpoint, body, private_key.sign(body))


def parse_signed_checkpoint(line: bytes) -> SignedCheckpoint:
    """Parse a checkpoint line (e.g. a peer's) without checking its signature.

    Use it to find which key to verify with; then call `verify_checkpoint`.
    Raises InvalidCheckpointError if the line is malformed or not canonical.
    """
    try:
        raw = verifier.parse_checkpoint_line(line.strip())
        checkpoint = Checkpoint(
            tree_size=raw.tree_size,
            root_hash=raw.root_hash,
            time=parse_time(raw.time),
            node_id=raw.node_id,
            key_id=raw.key_id,
        )
    except (verifier.VerificationError, InvalidEntryError) as exc:
        raise InvalidCheckpointError(str(exc)) from None
    if checkpoint.to_bytes() != raw.body:
        raise InvalidCheckpointError("checkpoint body is not in canonical form")
    return SignedCheckpoint(checkpoint, raw.body, raw.signature)


def verify_checkpoint(signed: SignedCheckpoint, public_key: Ed25519PublicKey) -> Checkpoint:
    """Return the checkpoint if its signature verifies over the bytes received.

    Arguments in the order of the verifier's twin (`verifier.verify_checkpoint`).

    Raises InvalidCheckpointError otherwise.
    """
    if signed.checkpoint.to_bytes() != signed.body:
        raise InvalidCheckpointError("checkpoint fields do not match the signed bytes")
    try:
        public_key.verify(signed.signature, signed.body)
    except InvalidSignature:
        raise InvalidCheckpointError("checkpoint signature does not verify") from None
    return signed.checkpoint
