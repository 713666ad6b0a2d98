"""Errors raised by the node side of the audit log.

The offline verifier has its own tree (`nodes.audit.verifier.VerificationError`)
because it must stand alone; these are for code that builds the log::

    AuditError
    ├── InvalidEntryError        an entry field has the wrong type, length or characters
    ├── InvalidCheckpointError   a checkpoint is malformed or its signature does not verify
    ├── InvalidProofError        an inclusion or consistency proof does not verify
    ├── ExportError              entries and checkpoints cannot form a valid export
    ├── LogNotInitializedError   the database has no audit head row (the node never opened it)
    └── LogIntegrityError        the stored log is cut short or rewritten: the node must not serve

Every message is safe to show: it names fields and sizes, never field contents.
"""

from __future__ import annotations


class AuditError(Exception):
    """Base class for audit log errors."""


class InvalidEntryError(AuditError, ValueError):
    """An audit entry field has the wrong type, length or characters."""


class InvalidCheckpointError(AuditError, ValueError):
    """A checkpoint is malformed or its signature does not verify."""


class InvalidProofError(AuditError, ValueError):
    """A Merkle inclusion or consistency proof does not verify."""


class ExportError(AuditError, ValueError):
    """Entries and checkpoints given to the export writer cannot form a valid export."""


class LogNotInitializedError(AuditError, RuntimeError):
    """The audit head row is missing: open the node (``Node.open``) before appending."""


class LogIntegrityError(AuditError, RuntimeError):
    """The stored log no longer matches a checkpoint this node signed; refuse to serve."""
