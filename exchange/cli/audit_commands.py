"""``exchange audit``: verify an export offline, and (operator) export, checkpoint, show the key,
list entries and count them (``entries``, ``summary``) for auditors who work from a terminal.

``verify`` wraps the standalone verifier (`nodes.audit.verifier`), the same single file an
auditor can copy and run with only ``cryptography`` installed, so both give one verdict.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from exchange.cli.common import NodeDir, console, errors, fail, open_node, operator, utcnow
from nodes.audit import (
    verifier,
    vocabulary,
)  # light (stdlib + cryptography); typer reads vocabulary

if TYPE_CHECKING:
    from nodes.audit import lookup


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
    from nodes.audit import export as log_export

    with open_node(directory) as node:
        final = log_export.prepare(
            node.engine, node.key.private_key, actor=operator(), role="operator", now=utcnow()
        )
        key_lines = log_export.key_lines(node.settings.keys_dir, node_id=node.settings.node_id)
        partial = out.with_name(out.name + ".partial")
        with partial.open("wb") as handle:
            for chunk in log_export.stream(node.engine, final, key_lines):
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        partial.replace(out)  # never leave a half-written file under the final name
    c = final.checkpoint
    console.print(f"Exported {c.tree_size} entries to {out}", highlight=False)
    print(f"root {c.root_hash}")


def checkpoint(directory: NodeDir) -> None:
    """Sign a checkpoint of the log now, and print its line (keep it to check later exports)."""
    from nodes.audit import checkpoint_store

    with open_node(directory) as node:
        signed = checkpoint_store.sign(node.engine, node.key.private_key, now=utcnow())
    errors.print(f"Signed a checkpoint of {signed.checkpoint.tree_size} entries:")
    print(signed.to_line().decode())


def public_key(directory: NodeDir) -> None:
    """Print the node's public key (PEM) for auditors; its base64url form goes to stderr."""
    from cryptography.hazmat.primitives import serialization

    from nodes.identity import public_key_text

    with open_node(directory) as node:
        key = node.key.public_key
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    errors.print(f"base64url: {public_key_text(key)}", highlight=False)
    print(pem.decode(), end="")


def _moment(text: str | None, name: str) -> dt.datetime | None:
    if text is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        fail(f"--{name} must be an ISO 8601 time with a zone, e.g. 2026-01-31T00:00:00Z", code=2)
    if moment.tzinfo is None:
        fail(f"--{name} must carry a zone (Z or +HH:MM)", code=2)
    return moment


Actor = Annotated[str | None, typer.Option(help="Exact actor, e.g. partner:XB or token:NAME")]
Action = Annotated[vocabulary.Action | None, typer.Option(help="Exact action")]
Outcome = Annotated[vocabulary.Outcome | None, typer.Option(help="The outcome")]
Partner = Annotated[str | None, typer.Option(help="The partner node concerned, e.g. XB")]
Schema = Annotated[str | None, typer.Option(help="The report schema, e.g. weekly_epi@1")]
Rule = Annotated[
    str | None,
    typer.Option(help="The rule that refused a release, e.g. 'red line RL1' or budget"),
]
Since = Annotated[str | None, typer.Option(help="From this time on (inclusive), with a zone")]
Until = Annotated[str | None, typer.Option(help="Before this time (exclusive), with a zone")]


def _query(
    actor: str | None,
    action: str | None,
    outcome: str | None,
    partner: str | None,
    schema: str | None,
    rule: str | None,
    since: str | None,
    until: str | None,
) -> lookup.Filters:
    from nodes.audit import lookup

    return lookup.Filters(
        actor=actor,
        action=action,
        outcome=outcome,
        partner=partner,
        schema=schema,
        rule=rule,
        since=_moment(since, "since"),
        until=_moment(until, "until"),
    )


def entries(
    directory: NodeDir,
    actor: Actor = None,
    action: Action = None,
    outcome: Outcome = None,
    partner: Partner = None,
    schema: Schema = None,
    rule: Rule = None,
    since: Since = None,
    until: Until = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many entries")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line")] = False,
) -> None:
    """List entries matching every filter, oldest first (format-1 entries in today's words)."""
    from nodes.audit import summary

    query = _query(actor, action, outcome, partner, schema, rule, since, until)
    with open_node(directory) as node:
        found = []
        for entry in summary.entries(node.engine, query):
            found.append(entry)
            if len(found) == limit:
                break
    if as_json:
        for entry in found:
            print(json.dumps(entry, ensure_ascii=False, sort_keys=True))
        return
    table = Table(
        "seq", "time", "actor", "action", "resource", "outcome", "partner", "rule", "ε (micro)"
    )
    for e in found:
        eps = e.get("epsilon_micro")
        table.add_row(
            str(e["seq"]),
            e["time"],
            e["actor"],
            e["action"],
            e["resource"],
            e["outcome"],
            e.get("partner") or "",
            e.get("rule") or "",
            "" if eps is None else str(eps),
        )
    console.print(table)


def summary_command(
    directory: NodeDir,
    actor: Actor = None,
    action: Action = None,
    outcome: Outcome = None,
    partner: Partner = None,
    schema: Schema = None,
    rule: Rule = None,
    since: Since = None,
    until: Until = None,
) -> None:
    """Count matching entries per partner, action and outcome, with the epsilon charged and
    the refusals per rule."""
    from nodes.audit import summary

    query = _query(actor, action, outcome, partner, schema, rule, since, until)
    with open_node(directory) as node:
        totals = summary.summarize(node.engine, query)
    table = Table("partner", "action", "outcome", "entries")
    for (who, what, how), count in sorted(totals.counts.items()):
        table.add_row(who, what, how, str(count))
    console.print(table)
    if totals.rules:
        refused = Table("partner", "refused by rule", "entries")
        for (who, rule_name), count in sorted(totals.rules.items()):
            refused.add_row(who, rule_name, str(count))
        console.print(refused)
    for who, micro in sorted(totals.epsilon_micro.items()):
        console.print(f"ε charged to {who}: {micro / 1_000_000:g} ({micro} micro)", highlight=False)
    console.print(f"{totals.entries} entries", highlight=False)


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="The tamper-evident audit log: verify, export, checkpoint, list and count entries.",
        no_args_is_help=True,
    )
    group.command("verify")(verify)
    group.command("export")(export)
    group.command("checkpoint")(checkpoint)
    group.command("public-key")(public_key)
    group.command("entries")(entries)
    group.command("summary")(summary_command)
    app.add_typer(group, name="audit")
