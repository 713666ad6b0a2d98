"""Backups and restores: a consistent online copy, and a restore that gives nothing back.

A backup is a directory: the database (SQLite's online backup API, or ``pg_dump
--format=custom``), the node's other files (settings, gazetteer, policy) and its keys, and a
``manifest.json`` naming the node, the time, the log's size and newest checkpoint at the
copy, and the SHA-256 of every file, signed with the node's key over its RFC 8785 bytes. The
audit anchor is not copied: it must be newer than any backup, which is what it is for.

A restore puts the database back and keeps the node's current keys, settings and anchor.
Two things the backup cannot know are then taken from outside it:

* **Spent budget.** The anchor holds the ledger's totals as of the newest checkpoint, signed
  (`nodes.audit.anchor`); each account is raised to the larger of the restored and anchored
  totals (`nodes.ledger.raise_to`), so nothing spent before that checkpoint is given back.
* **The log.** A partner that witnessed a checkpoint newer than the backup would see a
  shorter log as a rollback. Given an audit export covering the anchored checkpoint (checked
  with the verifier against the anchor), the entries lost since the backup are appended back
  verbatim: they hash to the same tree, so the log extends every checkpoint the node ever
  published. Without one, the restored log does not extend the anchor and the node refuses
  to start (`nodes.audit.startup`) until it is restored again with an export, or until the
  operator declares the gap: ``new_epoch`` starts a new epoch of the log with a signed
  statement naming the checkpoint it can no longer extend and the entries lost
  (`nodes.audit.epoch`), which witnesses and auditors see.

Every restore that reconciles writes a ``node.restore`` entry naming what it did.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Connection, Engine, select, text, update
from sqlalchemy.engine import make_url

from nodes import ledger, migrate
from nodes.audit import anchor, checkpoint_store, epoch, verifier
from nodes.audit.checkpoint import SignedCheckpoint, verify_checkpoint
from nodes.audit.entry import GENESIS_PREV
from nodes.audit.epoch import EpochStatement
from nodes.audit.errors import LogIntegrityError
from nodes.audit.log import append, read_head
from nodes.audit.startup import known_public_keys, open_log
from nodes.audit.tables import HEAD_ID, audit_entries, audit_head
from nodes.database import make_engine, reading, writing
from nodes.identity import load_current
from nodes.settings import NodeSettings

MANIFEST = "manifest.json"
FORMAT = "crisis-exchange/backup"
SQLITE_COPY = "database.sqlite3"
PG_COPY = "database.pgdump"
_SKIPPED_KEYS = (anchor.ANCHOR_FILE, ".audit-anchor.lock")


class BackupError(RuntimeError):
    """A backup cannot be taken or restored; the message says why and what to do."""


@dataclass(frozen=True)
class Restored:
    """What a restore did; ``missing`` is empty when the node may start."""

    log_size: int
    appended: int
    raised: list[tuple[str, int, int]] = field(default_factory=list)
    missing: str = ""
    epoch: EpochStatement | None = None  # the new epoch declared, if one was


def take(settings: NodeSettings, out: Path, *, actor: str, now: datetime) -> dict[str, Any]:
    """Copy the node at ``settings`` into the new directory ``out`` while it runs; return
    the manifest. Raises BackupError (``out`` exists, ``pg_dump`` missing or failing)."""
    if out.exists():
        raise BackupError(f"{out} already exists; a backup goes into a new directory")
    engine = make_engine(settings.database)
    copy: Engine | None = None
    try:
        with writing(engine) as conn:
            append(
                conn,
                actor=actor,
                role="operator",
                action="node.backup",
                resource="log:audit",
                outcome="allowed",
                reason=f"backup to {out.name}",
                now=now,
            )
        with reading(engine) as conn:  # PostgreSQL: the dump holds at least this much
            head = read_head(conn)
            latest = checkpoint_store.latest_checkpoint(conn)
        out.mkdir(mode=0o700, parents=True)
        try:
            kind = _copy_database(settings, engine, out)
            _copy_files(settings.directory, out)
        except BaseException:
            shutil.rmtree(out, ignore_errors=True)
            raise
        if kind == "sqlite":  # exactly what the copy holds
            copy = make_engine(f"sqlite:///{out / SQLITE_COPY}")
            with reading(copy) as conn:
                head = read_head(conn)
                latest = checkpoint_store.latest_checkpoint(conn)
    finally:
        engine.dispose()
        if copy is not None:
            copy.dispose()
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "version": 1,
        "node_id": settings.node_id,
        "taken_at": now.isoformat(),
        "database": kind,
        "log_size": 0 if head is None else head.size,
        "checkpoint": None if latest is None else latest.to_line().decode(),
        "files": _digests(out),
    }
    key = load_current(settings.keys_dir)
    signature = key.private_key.sign(rfc8785.dumps(manifest))
    document = {"manifest": manifest, "signature": base64.b64encode(signature).decode()}
    _write_private(out / MANIFEST, json.dumps(document, indent=1).encode())
    return manifest


def _copy_database(settings: NodeSettings, engine: Engine, out: Path) -> str:
    url = make_url(settings.database)
    if url.get_backend_name() == "sqlite":
        target = out / SQLITE_COPY
        with (
            closing(sqlite3.connect(str(url.database))) as source,
            closing(sqlite3.connect(target)) as copy,
        ):
            source.backup(copy)  # consistent while writers go on
        target.chmod(0o600)
        return "sqlite"
    with engine.connect() as conn:
        schema = conn.execute(text("SELECT current_schema()")).scalar_one()
    command = [
        "pg_dump",
        "--format=custom",
        f"--schema={schema}",
        f"--file={out / PG_COPY}",
        _libpq_url(settings.database),
    ]
    _run(command, "pg_dump")
    (out / PG_COPY).chmod(0o600)
    return "postgresql"


def _libpq_url(url: str) -> str:
    """The URL as libpq reads it (no SQLAlchemy driver name)."""
    parsed = make_url(url).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


def _run(command: list[str], tool: str) -> None:
    if shutil.which(tool) is None:
        shown = " ".join([*command[:-1], "DATABASE_URL"])
        raise BackupError(f"{tool} is not on PATH; install the PostgreSQL client and run: {shown}")
    done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        raise BackupError(f"{tool} failed: {done.stderr.strip()[:500]}")


def _copy_files(directory: Path, out: Path) -> None:
    """The node's files beside the database, and its keys (modes kept: keys stay 0600)."""
    for path in sorted(directory.iterdir()):
        if path.is_file() and not path.name.startswith("node.sqlite3"):
            shutil.copy2(path, out / path.name)
    keys = directory / "keys"
    (out / "keys").mkdir(mode=0o700)
    for path in sorted(keys.iterdir()):
        if path.is_file() and path.name not in _SKIPPED_KEYS and not path.name.endswith(".tmp"):
            shutil.copy2(path, out / "keys" / path.name)


def _digests(out: Path) -> dict[str, str]:
    return {
        str(path.relative_to(out)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(out.rglob("*"))
        if path.is_file() and path.name != MANIFEST
    }


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def seed(backup: Path, directory: Path) -> None:
    """Make a lost node directory from a backup's settings and keys (then restore into it):
    the manifest can then be checked only against the backup's own keys."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for path in sorted(backup.rglob("*")):
        relative = path.relative_to(backup)
        if path.is_file() and path.name not in (MANIFEST, SQLITE_COPY, PG_COPY):
            (directory / relative).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            shutil.copy2(path, directory / relative)


def read_manifest(backup: Path, keys_dir: Path) -> dict[str, Any]:
    """The backup's manifest, its signature checked with one of the node's keys and every
    file's digest checked. Raises BackupError naming what does not hold."""
    try:
        document = json.loads((backup / MANIFEST).read_bytes())
        manifest: dict[str, Any] = document["manifest"]
        signature = base64.b64decode(document["signature"], validate=True)
    except (OSError, ValueError, KeyError, TypeError):
        raise BackupError(f"{backup} is not a backup (no readable {MANIFEST})") from None
    signed = rfc8785.dumps(manifest)
    for key in known_public_keys(keys_dir).values():
        try:
            key.verify(signature, signed)
            break
        except InvalidSignature:
            continue
    else:
        raise BackupError(
            f"the manifest of {backup} is not signed by any of this node's keys: it was "
            "altered, or it is another node's backup; refusing to restore"
        )
    if _digests(backup) != manifest.get("files"):
        raise BackupError(
            f"the files in {backup} do not match its signed manifest: a file was altered, "
            "added or removed; refusing to restore"
        )
    return manifest


def restore(
    backup: Path,
    settings: NodeSettings,
    *,
    export: Path | None,
    actor: str,
    now: datetime,
    new_epoch: bool = False,
) -> Restored:
    """Put the backup's database back under ``settings`` (the node must be stopped), raise
    the ledger to the anchored totals and reconcile the log. Raises BackupError or
    LogIntegrityError (a damaged anchor or export: nothing is appended then).

    When entries the anchored checkpoint covers are still missing (no export, or none
    covering it), ``new_epoch`` declares a new epoch (`nodes.audit.epoch.declare`) and the
    node may start; without it `Restored.missing` says what is missing.
    """
    keys_dir = settings.keys_dir
    manifest = read_manifest(backup, keys_dir)
    if manifest["node_id"] != settings.node_id:
        raise BackupError(
            f"{backup} is a backup of node {manifest['node_id']!r}, not {settings.node_id!r}"
        )
    held = anchor.read(anchor.path_in(keys_dir))
    keys = known_public_keys(keys_dir)
    accounts: list[anchor.Account] = []
    if held is not None:
        key = keys.get(held.checkpoint.key_id)
        if key is None:
            raise BackupError("the anchored checkpoint names a key this node lacks")
        accounts = anchor.read_ledger(anchor.path_in(keys_dir), key) or []
    export_entries = _verified_entries(export, keys, held) if export is not None else None
    _put_back(backup, manifest, settings)
    engine = make_engine(settings.database)
    try:
        migrate.upgrade(engine)
        with writing(engine) as conn:
            raised = ledger.raise_to(conn, accounts, now)
            appended = 0
            if export_entries is not None:
                appended = _append_verbatim(conn, export_entries)
            head = read_head(conn)
            size = 0 if head is None else head.size
        missing = ""
        declared = None
        if held is not None and size < held.checkpoint.tree_size and new_epoch:
            verify_checkpoint(held, keys[held.checkpoint.key_id])  # the gap names a real one
            current = load_current(keys_dir)
            declared = epoch.declare(
                engine,
                keys_dir=keys_dir,
                private_key=current.private_key,
                abandoned=held,
                actor=actor,
                now=now,
            )
            size = _head_size(engine)
        elif held is not None and size < held.checkpoint.tree_size:
            missing = (
                f"the restored log holds {size} entries but the newest checkpoint this node "
                f"signed covers {held.checkpoint.tree_size}: entries seq {size}.."
                f"{held.checkpoint.tree_size - 1} are missing. The node refuses to start "
                "until they are put back: run 'exchange restore' again with --export and an "
                f"audit export covering at least {held.checkpoint.tree_size} entries, or, if "
                "none exists, with --new-epoch to declare the gap in a signed statement"
            )
            return Restored(log_size=size, appended=appended, raised=raised, missing=missing)
        with writing(engine) as conn:
            append(
                conn,
                actor=actor,
                role="operator",
                action="node.restore",
                resource="log:audit",
                outcome="allowed",
                reason=_reason(manifest, appended, raised, declared),
                now=now,
            )
        open_log(engine, node_id=settings.node_id, keys_dir=keys_dir)
        return Restored(log_size=size, appended=appended, raised=raised, epoch=declared)
    finally:
        engine.dispose()


def _head_size(engine: Engine) -> int:
    with reading(engine) as conn:
        head = read_head(conn)
    return 0 if head is None else head.size


def _reason(
    manifest: dict[str, Any],
    appended: int,
    raised: list[tuple[str, int, int]],
    declared: EpochStatement | None = None,
) -> str:
    budgets = "; ".join(f"{what} raised from {a} to {b} micro-epsilon" for what, a, b in raised)
    lost = ""
    if declared is not None:
        lost = (
            f"{declared.fields['entries_lost']} entries lost for good: new epoch declared "
            f"({declared.digest}); "
        )
    return (
        f"restored the backup taken at {manifest['taken_at']} (log size {manifest['log_size']}); "
        f"{appended} entries put back from an audit export; {lost}"
        + (budgets or "no budget account was behind the anchored totals")
        + "; reports pushed after the backup are lost and must be pushed again"
    )


def _verified_entries(
    export: Path, keys: dict[str, Ed25519PublicKey], held: SignedCheckpoint | None
) -> list[bytes]:
    """The export's entry lines, once the verifier accepts it with one of the node's keys and
    it extends the anchored checkpoint. Raises BackupError otherwise."""
    kept = None if held is None else held.to_line()
    failure = "no key of this node verifies it"
    for key in keys.values():
        try:
            result = verifier.verify_export_file(export, key, kept)
        except verifier.VerificationError as exc:
            failure = f"[{exc.kind}] {exc}"
            continue
        except OSError as exc:
            raise BackupError(f"cannot read the export {export}: {exc.strerror}") from None
        if held is not None and result.tree_size < held.checkpoint.tree_size:
            raise BackupError(
                f"the export covers {result.tree_size} entries but the newest checkpoint this "
                f"node signed covers {held.checkpoint.tree_size}: it is older than the anchor"
            )
        with export.open("rb") as handle:
            lines = [line.rstrip(b"\n") for line in handle]
        return [
            line
            for line in lines[1:]
            if line and not line.startswith((verifier.CHECKPOINT_PREFIX, verifier.KEY_PREFIX))
        ][: result.tree_size]
    raise BackupError(f"the audit export {export} does not verify: {failure}; refusing to restore")


def _put_back(backup: Path, manifest: dict[str, Any], settings: NodeSettings) -> None:
    """Replace the node's database with the backup's; copy only the files the node lacks."""
    for path in sorted(backup.rglob("*")):
        relative = path.relative_to(backup)
        target = settings.directory / relative
        skipped = path.name in (MANIFEST, SQLITE_COPY, PG_COPY)
        if path.is_file() and not skipped and not target.exists():
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            shutil.copy2(path, target)
    url = make_url(settings.database)
    if manifest["database"] == "sqlite":
        if url.get_backend_name() != "sqlite":
            raise BackupError("this is a SQLite backup but the node now uses PostgreSQL")
        with (
            closing(sqlite3.connect(backup / SQLITE_COPY)) as source,
            closing(sqlite3.connect(str(url.database))) as target_db,
        ):
            source.backup(target_db)  # replaces every page, WAL included
        return
    if url.get_backend_name() != "postgresql":
        raise BackupError("this is a PostgreSQL backup but the node now uses SQLite")
    command = [
        "pg_restore",
        "--clean",
        "--if-exists",
        "--no-owner",
        "--single-transaction",
        f"--dbname={_libpq_url(settings.database)}",
        str(backup / PG_COPY),
    ]
    _run(command, "pg_restore")


def _append_verbatim(conn: Connection, entries: list[bytes]) -> int:
    """Append the export's entries beyond the restored head, byte for byte; return how many.

    The export's first ``size`` entries must be the restored ones (same leaf hashes), and
    each appended entry must chain to the one before: raises LogIntegrityError otherwise.
    """
    head = read_head(conn)
    size = 0 if head is None else head.size
    if len(entries) <= size:
        return 0
    stored = conn.execute(
        select(audit_entries.c.leaf_hash)
        .where(audit_entries.c.seq < size)
        .order_by(audit_entries.c.seq)
    ).all()
    for seq, (leaf,) in enumerate(stored):
        if hashlib.sha256(b"\x00" + entries[seq]).digest() != bytes(leaf):
            raise LogIntegrityError(
                f"the export's entry seq {seq} differs from the backup's: they are not the "
                "same history; refusing to restore from it"
            )
    previous = GENESIS_PREV if head is None or head.last_leaf is None else head.last_leaf.hex()
    last = head.last_leaf if head is not None else None
    prev_leaf = last
    for seq in range(size, len(entries)):
        data = entries[seq]
        if f'"prev":"{previous}"'.encode() not in data:
            raise LogIntegrityError(f"the export's entry seq {seq} does not chain to seq {seq - 1}")
        leaf = hashlib.sha256(b"\x00" + data).digest()
        conn.execute(audit_entries.insert().values(seq=seq, entry=data, leaf_hash=leaf))
        previous, last, prev_leaf = leaf.hex(), leaf, last
    conn.execute(
        update(audit_head)
        .where(audit_head.c.id == HEAD_ID)
        .values(size=len(entries), last_leaf=last, prev_leaf=prev_leaf)
    )
    return len(entries) - size
