"""``exchange audit``: verify an export offline, and (operator) export, checkpoint, show the key.

``verify`` wraps the standalone verifier (`nodes.audit.verifier`), the same single file an
auditor can copy and run with only ``cryptography`` installed, so both give one verdict.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from cryptography.hazmat.primitives import serialization

from exchange.cli.common import NodeDir, console, errors, fail, open_node, operator, utcnow
from nodes.audit import exporting, signer, verifier
from nodes.identity import public_key_text


def verify(
    export: Annotated[Path, typer.Argument(help="The export file, or - for standard input")],
    public_key: Annotated[
        Path,
        typer.Option(help="The node's Ed25519 public key: PEM, DER, hex, base64 or base64url"),
    ],
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="A checkpoint line you kept from before: the log must extend it"),
    ] = None,
) -> None:
    """Verify an audit export offline. Exit 0 if it holds, 1 naming what failed, 2 on usage."""
    try:
        key = verifier.load_public_key(public_key.read_bytes())
        kept = checkpoint.read_bytes() if checkpoint is not None else None
    except (OSError, ValueError) as exc:
        fail(str(exc), code=2)
    try:
        result = verifier.verify_export_file(export, key, kept)
    except verifier.VerificationError as exc:
        print(f"FAILED [{exc.kind}]: {exc}")  # plain: scripts grep this, as the standalone's
        raise typer.Exit(1) from None
    except OSError as exc:
        fail(f"cannot read the export: {exc}", code=2)
    print(f"OK: {result.summary()}")


def export(
    directory: NodeDir,
    out: Annotated[Path, typer.Option(help="Where to write the export (.jsonl)")],
) -> None:
    """Export the whole log from the node directory (offline), ending with a fresh checkpoint."""
    with open_node(directory) as node:
        final = exporting.prepare(
            node.engine, node.key.private_key, actor=operator(), role="operator", now=utcnow()
        )
        partial = out.with_name(out.name + ".partial")
        with partial.open("wb") as handle:
            for chunk in exporting.stream(node.engine, final):
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        partial.replace(out)  # never leave a half-written file under the final name
    c = final.checkpoint
    console.print(f"Exported {c.tree_size} entries to {out}", highlight=False)
    print(f"root {c.root_hash}")


def checkpoint(directory: NodeDir) -> None:
    """Sign a checkpoint of the log now, and print its line (keep it to check later exports)."""
    with open_node(directory) as node:
        signed = signer.sign(node.engine, node.key.private_key, now=utcnow())
    errors.print(f"Signed a checkpoint of {signed.checkpoint.tree_size} entries:")
    print(signed.to_line().decode())


def public_key(directory: NodeDir) -> None:
    """Print the node's public key (PEM) for auditors; its base64url form goes to stderr."""
    with open_node(directory) as node:
        key = node.key.public_key
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    errors.print(f"base64url: {public_key_text(key)}", highlight=False)
    print(pem.decode(), end="")


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="The tamper-evident audit log: verify exports, export, checkpoint.",
        no_args_is_help=True,
    )
    group.command("verify")(verify)
    group.command("export")(export)
    group.command("checkpoint")(checkpoint)
    group.command("public-key")(public_key)
    app.add_typer(group, name="audit")
