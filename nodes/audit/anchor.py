"""The log's anchor: the newest checkpoint this node ever signed, kept outside the database.

Whoever controls the database can rewrite the log, re-chain it, fix the head row and delete
the checkpoints and subtrees that would contradict it, or put back an older copy of the whole
database: both are self-consistent, so a check of the database against itself passes and the
node would go on to sign the forged history with its own key. The anchor is what the
database cannot take away: ``DIR/keys/audit-anchor.json``, beside the key (same owner, mode
0600, not in the database file nor in its backups). The signer refuses to sign any tree
that does not extend it, and writes each new checkpoint to it **before** the checkpoint's
transaction commits, so the file is never older than a checkpoint the node published
(`nodes.audit.checkpoint_store`); the start-up check refuses a log that does not extend it
(`nodes.audit.startup`).

The file holds one signed checkpoint line, which authenticates itself (the start-up check
verifies it with the node's keys), inside a small versioned JSON object::

    {"format":"crisis-exchange/audit-anchor","version":1,"checkpoint":"{\\"checkpoint\\":...",
     "ledger":{"accounts":[[SCOPE,PARTNER,SCHEMA,PERIOD,SPENT,CAP],...],"signature":"..."}}

``ledger`` is the privacy-budget ledger's spent totals as the checkpoint's transaction saw
them, signed with the checkpoint's key over the RFC 8785 bytes of the checkpoint line and
the accounts (`ledger_bytes`). Spent budget only grows, so a restore raises each account to
at least its anchored total (`nodes.backup`): nothing spent before that checkpoint is ever
given back. Anchors written before the ledger was kept have no ``ledger``.

Which file belongs to which database is recorded here, per engine, by `attach` when the node
opens (`nodes.audit.startup.open_log`), so every signing path of an opened node is anchored
without passing the path around.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import weakref
from collections.abc import Sequence
from pathlib import Path

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import Engine

from nodes.audit.checkpoint import SignedCheckpoint, parse_signed_checkpoint
from nodes.audit.errors import InvalidCheckpointError, LogIntegrityError

ANCHOR_FILE = "audit-anchor.json"
FORMAT = "crisis-exchange/audit-anchor"
LEDGER_FORMAT = "crisis-exchange/anchored-ledger"

#: One account's anchored total: scope, partner id, schema id, period, spent and cap (micro).
Account = tuple[str, str, str, str, int, int]

_attached: weakref.WeakKeyDictionary[Engine, Path] = weakref.WeakKeyDictionary()


def path_in(keys_dir: Path) -> Path:
    """Where a node directory's anchor lives: beside its keys."""
    return keys_dir / ANCHOR_FILE


def attach(engine: Engine, path: Path) -> None:
    """Anchor every checkpoint signed through ``engine`` at ``path`` from now on."""
    _attached[engine] = path


def attached(engine: Engine) -> Path | None:
    """The anchor file of ``engine``'s log, or None if the node was not opened with one."""
    return _attached.get(engine)


def read(path: Path) -> SignedCheckpoint | None:
    """The anchored checkpoint (signature not checked here), or None if there is no file.

    Raises LogIntegrityError if the file exists but cannot be read as an anchor.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LogIntegrityError(f"cannot read the audit anchor {path}: {exc.strerror}") from None
    try:
        obj = json.loads(data)
        if obj.get("format") != FORMAT or obj.get("version") != 1:
            raise ValueError("not an audit anchor")
        return parse_signed_checkpoint(obj["checkpoint"].encode())
    except (ValueError, TypeError, KeyError, AttributeError, InvalidCheckpointError):
        raise LogIntegrityError(
            f"the audit anchor {path} is damaged (not an anchor file of this format); "
            "refusing to serve"
        ) from None


def ledger_bytes(signed: SignedCheckpoint, accounts: Sequence[Account]) -> bytes:
    """The bytes the ledger's signature covers: bound to the checkpoint it was kept with."""
    return rfc8785.dumps(
        {
            "format": LEDGER_FORMAT,
            "checkpoint": signed.to_line().decode(),
            "accounts": [list(a) for a in sorted(accounts)],
        }
    )


def read_ledger(path: Path, public_key: Ed25519PublicKey) -> list[Account] | None:
    """The anchored ledger totals, their signature checked with ``public_key`` (the key that
    signed the anchored checkpoint); None if the anchor or its ledger is absent.

    Raises LogIntegrityError if the ledger is malformed or its signature does not verify.
    """
    signed = read(path)
    if signed is None:
        return None
    obj = json.loads(path.read_bytes())
    ledger = obj.get("ledger")
    if ledger is None:
        return None
    try:
        accounts: list[Account] = [
            (str(a[0]), str(a[1]), str(a[2]), str(a[3]), int(a[4]), int(a[5]))
            for a in ledger["accounts"]
        ]
        signature = base64.b64decode(ledger["signature"], validate=True)
        public_key.verify(signature, ledger_bytes(signed, accounts))
    except (ValueError, TypeError, KeyError, IndexError, InvalidSignature):
        raise LogIntegrityError(
            f"the ledger totals in the audit anchor {path} are damaged or their signature "
            "does not verify; refusing to restore"
        ) from None
    return accounts


def write(
    path: Path,
    signed: SignedCheckpoint,
    *,
    ledger: Sequence[Account] | None = None,
    private_key: Ed25519PrivateKey | None = None,
) -> None:
    """Replace the anchor with ``signed`` (and the ledger's totals, signed with
    ``private_key``, the key that signed ``signed``) atomically and durably (fsync file and
    directory).

    A reader sees the old anchor or the new, never half of one. Raises OSError if it cannot
    be written: the caller's checkpoint must then not be committed.
    """
    obj: dict[str, object] = {
        "format": FORMAT,
        "version": 1,
        "checkpoint": signed.to_line().decode(),
    }
    if ledger is not None and private_key is not None:
        signature = private_key.sign(ledger_bytes(signed, ledger))
        obj["ledger"] = {
            "accounts": [list(a) for a in sorted(ledger)],
            "signature": base64.b64encode(signature).decode(),
        }
    body = json.dumps(obj, separators=(",", ":"))
    # A name of its own: a start-up catching the anchor up may race another process's signer.
    scratch = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(body + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    scratch.replace(path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def describe(signed: SignedCheckpoint, path: Path) -> str:
    """Name the anchored checkpoint in a refusal."""
    c = signed.checkpoint
    return (
        f"the newest checkpoint this node signed (tree size {c.tree_size}, "
        f"{c.time:%Y-%m-%d %H:%M:%S}Z, kept outside the database in {path})"
    )
