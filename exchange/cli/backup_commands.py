"""``exchange backup`` and ``exchange restore``: an online copy of a node, and putting it back
without giving back spent budget or rolling back the log (docs/operations.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from exchange.cli.common import NodeDir, console, errors, fail, operator, utcnow


def backup_command(
    directory: NodeDir,
    out: Annotated[Path, typer.Argument(help="A new directory to hold the backup")],
) -> None:
    """Take a consistent copy of a running node: database, settings and keys (keep it safe:
    it holds the node's private key)."""
    from nodes import backup
    from nodes.audit.errors import AuditError
    from nodes.settings import NodeSettings

    try:
        settings = NodeSettings.load(directory)
        manifest = backup.take(settings, out, actor=operator(), now=utcnow())
    except (FileNotFoundError, ValueError, AuditError, backup.BackupError) as exc:
        fail(str(exc))
    console.print(
        f"Backed up node {manifest['node_id']} ({manifest['database']}, log of "
        f"{manifest['log_size']} entries) to {out}",
        highlight=False,
    )


def restore_command(
    backup_dir: Annotated[Path, typer.Argument(help="A directory made by 'exchange backup'")],
    directory: NodeDir,
    export: Annotated[
        Path | None,
        typer.Option(help="The newest audit export: puts back the entries lost since the backup"),
    ] = None,
    new_epoch: Annotated[
        bool,
        typer.Option(
            "--new-epoch",
            help="When no export covers the newest checkpoint: declare the lost entries in a "
            "signed statement and start a new epoch of the log (partners and auditors see it)",
        ),
    ] = False,
) -> None:
    """Put a backup back into a stopped node. Exit 0 if the node may start, 1 if not (why)."""
    from nodes import backup
    from nodes.audit.errors import AuditError
    from nodes.settings import SETTINGS_FILE, NodeSettings

    try:
        if not (directory / SETTINGS_FILE).exists():
            backup.seed(backup_dir, directory)  # the node directory itself was lost
        settings = NodeSettings.load(directory)
        done = backup.restore(
            backup_dir,
            settings,
            export=export,
            actor=operator(),
            now=utcnow(),
            new_epoch=new_epoch,
        )
    except (FileNotFoundError, ValueError, AuditError, backup.BackupError) as exc:
        fail(str(exc))
    for what, before, after in done.raised:
        errors.print(
            f"{what}: spent raised from {before} to {after} micro-epsilon", highlight=False
        )
    if done.missing:
        fail(f"restored the database, but {done.missing}")
    if done.epoch is not None:
        fields = done.epoch.fields
        errors.print(
            f"New epoch of the audit log: {fields['entries_lost']} entries (seq "
            f"{fields['restored_tree_size']}..{fields['abandoned_tree_size'] - 1}) are lost for "
            f"good; the signed statement {done.epoch.digest} names the checkpoint of tree size "
            f"{fields['abandoned_tree_size']} that the log no longer extends. Partners that "
            "witnessed it see the declared gap; tell your auditors.",
            highlight=False,
        )
    console.print(
        f"Restored {backup_dir} into {directory}: log of {done.log_size} entries "
        f"({done.appended} put back from the export); reports pushed after the backup are "
        "lost: ask agencies to push them again",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.command("backup")(backup_command)
    app.command("restore")(restore_command)
