"""The audit log's pure core: entries, Merkle tree, checkpoints, exports, verification.

No I/O and no database here; the storage layer calls these. Modules:

* `entry`: canonical entry bytes, leaf hash, the ``prev`` hash chain
* `merkle`: RFC 6962 / RFC 9162 roots, inclusion and consistency proofs
* `checkpoint`: Ed25519-signed tree heads
* `export`: writing an export file
* `verifier`: the standalone offline verifier (stdlib + cryptography only)
"""

from nodes.audit.checkpoint import (
    Checkpoint,
    SignedCheckpoint,
    key_id_for,
    parse_signed_checkpoint,
    sign_checkpoint,
    verify_checkpoint,
)
from nodes.audit.entry import GENESIS_PREV, AuditEntry, encode_entry, entry_leaf_hash, prev_for
from nodes.audit.errors import (
    AuditError,
    ExportError,
    InvalidCheckpointError,
    InvalidEntryError,
    InvalidProofError,
)
from nodes.audit.export import build_export, export_lines, write_export
from nodes.audit.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)
from nodes.audit.verifier import VerificationError, VerifiedExport, verify_export

__all__ = [
    "EMPTY_ROOT",
    "GENESIS_PREV",
    "AuditEntry",
    "AuditError",
    "Checkpoint",
    "ExportError",
    "InvalidCheckpointError",
    "InvalidEntryError",
    "InvalidProofError",
    "MerkleTree",
    "SignedCheckpoint",
    "VerificationError",
    "VerifiedExport",
    "build_export",
    "encode_entry",
    "entry_leaf_hash",
    "export_lines",
    "key_id_for",
    "leaf_hash",
    "node_hash",
    "parse_signed_checkpoint",
    "prev_for",
    "root",
    "sign_checkpoint",
    "verify_checkpoint",
    "verify_consistency",
    "verify_export",
    "verify_inclusion",
    "write_export",
]
