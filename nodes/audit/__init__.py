"""The audit log: a pure core, and the storage and services built on it.

The pure core (no I/O, no database; re-exported here):

* `entry`: canonical entry bytes, leaf hash, the ``prev`` hash chain
* `merkle`: RFC 6962 / RFC 9162 roots, inclusion and consistency proofs, `Frontier`
* `checkpoint`: Ed25519-signed tree heads
* `export_format`: writing an export file
* `verifier`: the standalone offline verifier (stdlib + cryptography only)

On the node's database (import them by module, so importing the core stays I/O-free):

* `tables`: the audit tables; `log`: `append` inside the act's transaction
* `tree`: roots and proofs from stored subtrees; `checkpoint_store`: signing and reading
  checkpoints
* `startup`: the check that refuses to serve a cut, rewritten or damaged log
* `anchor`: the newest signed checkpoint, kept beside the key, outside the database
* `vocabulary`: the closed vocabularies of entries; `lookup`: the index and its `Filters`;
  `summary`: filtered entries and totals (CLI)
* `reading`, `export`: what auditors read and take away; `events`: entries for refused requests
* `witness`: peers' checkpoints and flags; `status`: the log at a glance (``/readyz``)
"""

from nodes.audit.checkpoint import (
    Checkpoint,
    SignedCheckpoint,
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
from nodes.audit.export_format import build_export, export_lines, write_export
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
