"""``exchange received`` and ``exchange releases``: come back to releases, check, export them.

``received`` is the partner's side: what this node pulled, kept with the signed exchange, so
``verify`` checks the peer's signature again over the stored bytes and ``export --format
json`` writes those bytes exactly. ``releases`` is the provider's side: what this node
released, rebuilt from its store through the same converters (its JSON is a rebuilt copy,
marked so, never the bytes the partner got).
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from exchange.cli.common import NodeDir, console, fail, open_node

if TYPE_CHECKING:
    from exchange.clients.release_view import Rendering
    from nodes.node import Node


class Format(StrEnum):
    csv = "csv"
    json = "json"
    fhir = "fhir"
    hxl = "hxl"


class WeekSystemChoice(StrEnum):
    iso = "iso"
    mmwr = "mmwr"


ReleaseId = Annotated[int, typer.Argument(help="The number 'list' shows")]
FormatOption = Annotated[Format, typer.Option("--format", help="csv, json, fhir or hxl")]
OutOption = Annotated[Path | None, typer.Option("--out", help="Write to FILE, not the screen")]
WeekOption = Annotated[
    WeekSystemChoice | None,
    typer.Option(
        "--week-system",
        help="FHIR only: the provider's week numbering (the release does not say); "
        "default: this node's",
    ),
]


_RENDERINGS: dict[Format, Rendering] = {Format.csv: "csv", Format.hxl: "hxl", Format.fhir: "fhir"}


def _rendered(
    node: Node,
    document: dict[str, Any],
    fmt: Format,
    week: WeekSystemChoice | None,
    *,
    area_names: dict[str, str] | None = None,
) -> str:
    from exchange.clients.release_view import rendered

    if fmt == Format.json:
        return json.dumps(document, ensure_ascii=False, indent=2) + "\n"
    system = week.value if week is not None else node.settings.week_system
    try:
        return rendered(
            document,
            _RENDERINGS[fmt],
            registry=node.registry,
            week_system=system,
            area_names=area_names,
        )
    except ValueError as exc:
        fail(f"cannot write {fmt.value.upper()}: {exc}")


def _write(text: str | bytes, out: Path | None) -> None:
    if out is None:
        if isinstance(text, bytes):
            typer.echo(text.decode("utf-8"), nl=False)
        else:
            typer.echo(text, nl=False)
        return
    if isinstance(text, bytes):
        out.write_bytes(text)
    else:
        out.write_text(text, encoding="utf-8")
    console.print(f"Wrote {out}", highlight=False)


def list_received(
    directory: NodeDir,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many, newest first")] = 50,
) -> None:
    """The releases this node received from its peers, newest first."""
    from rich.markup import escape
    from rich.table import Table

    from nodes.releases import received

    with open_node(directory) as node:
        listed = received.listing(node.engine, offset=0, limit=limit)
        total = received.count(node.engine)
    table = Table(
        "#",
        "provider",
        "schema",
        "release",
        "received",
        "ε spent",
        "purpose",
        title=f"{total} received release(s)",
    )
    for item in listed:
        stored, release = item.release, item.release.document.get("release", {})
        table.add_row(
            str(stored.id),
            escape(f"{item.peer_name} ({stored.peer_id})"),  # a peer names itself
            stored.schema_id,
            stored.release_id
            + (" (cached)" if stored.cached else "")
            + (
                f" (superseded: notice #{stored.superseded_by_notice})"
                if stored.superseded_by_notice is not None
                else ""
            ),
            stored.received_at.isoformat(timespec="seconds"),
            f"{release.get('epsilon_spent', 0):g}",
            escape(str(release.get("query", {}).get("purpose", ""))),
        )
    console.print(table)


def _signature_line(node: Node, stored: Any) -> tuple[bool, str]:
    """(verified?, the sentence that says so or why not)."""
    from exchange.clients.pulling import reverify
    from exchange.signing.signatures import SignatureError, UnknownKeyError

    try:
        checked = reverify(node, stored)
    except UnknownKeyError as exc:
        return False, f"cannot be checked here: {exc}"
    except SignatureError as exc:
        return False, f"does NOT verify: {exc}; the stored copy changed after it arrived"
    line = f"verified: signed by {stored.peer_id}'s key {checked.signature.key_id}"
    if checked.key.revoked_at is not None:
        line += f" (key revoked since, at {checked.key.revoked_at.isoformat(timespec='seconds')})"
    return True, line


def show_received(directory: NodeDir, received_id: ReleaseId) -> None:
    """One received release: who sent it, what was asked, its cost, signature and cells."""
    from exchange.clients.release_view import release_table
    from nodes.releases import received

    with open_node(directory) as node:
        found = received.find(node.engine, received_id)
        ok, signature = _signature_line(node, found.release)
    document = found.release.document
    release = document["release"]
    asked = release.get("query", {})
    filters = "; ".join(f"{d} = {', '.join(v)}" for d, v in asked.get("filters", {}).items())
    lines = [
        f"Provider: {found.peer_name} ({found.release.peer_id})",
        f"Question: {release.get('schema')} by {', '.join(asked.get('group_by', []))}, "
        f"{', '.join(release.get('measures', []))}, weeks {asked.get('since')} – "
        f"{asked.get('until')}" + (f", where {filters}" if filters else ""),
        f"Purpose: {asked.get('purpose', '')}",
        f"ε spent: {release.get('epsilon_spent', 0):g} (release ε "
        f"{release.get('release_epsilon', 0):g}); ± is the "
        f"{release.get('confidence', 0.95):.0%} accuracy",
        f"Signature: {signature}",
    ]
    escalated = release.get("escalation")
    if escalated:
        lines.append(
            f"Escalation: made under emergency escalation {escalated['id']} of agreement "
            f"{escalated['agreement']}, proposed by {escalated['proposed_by']} and approved by "
            f"{escalated['approved_by']}, in force until {escalated['until']}"
        )
    if found.release.superseded_by_notice is not None:
        lines.append(
            f"Superseded: the provider corrected data it covered (received notice "
            f"#{found.release.superseded_by_notice}, 'exchange notices'); asking again is a "
            "new release"
        )
    for line in lines:
        console.print(line, highlight=False, markup=False)
    console.print(release_table(document))
    if not ok:
        raise typer.Exit(1)


def verify_received(directory: NodeDir, received_id: ReleaseId) -> None:
    """Check a received release's signature again over the stored bytes; exit 1 if it fails."""
    from nodes.releases import received

    with open_node(directory) as node:
        stored = received.get(node.engine, received_id)
        ok, line = _signature_line(node, stored)
    if not ok:
        fail(f"received release {received_id} {line}")
    console.print(f"Received release {received_id} {line}.", highlight=False, markup=False)


def export_received(
    directory: NodeDir,
    received_id: ReleaseId,
    fmt: FormatOption = Format.csv,
    out: OutOption = None,
    week_system: WeekOption = None,
) -> None:
    """Write a received release as CSV, the signed JSON (exact bytes), FHIR or HXL."""
    from nodes.releases import received

    with open_node(directory) as node:
        stored = received.get(node.engine, received_id)
        if fmt == Format.json:
            _write(stored.response.body, out)  # the exact bytes the signature covers
            return
        text = _rendered(node, stored.document, fmt, week_system)
    _write(text, out)


def list_provided(
    directory: NodeDir,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many, newest first")] = 50,
) -> None:
    """The releases this node made for its partners, newest first."""
    from rich.table import Table

    from nodes.database import reading
    from nodes.releases import store
    from policies.budget import epsilon

    with open_node(directory) as node, reading(node.engine) as conn:
        rows = store.listing(conn, limit=limit)
    table = Table("release", "partner", "schema", "ε", "created", title="Releases made here")
    for row in rows:
        table.add_row(
            str(row.id),
            row.partner_id,
            row.schema_id,
            f"{epsilon(row.epsilon_micro):g}",
            row.created_at.isoformat(timespec="seconds"),
        )
    console.print(table)


def export_provided(
    directory: NodeDir,
    release_id: Annotated[int, typer.Argument(help="The release number 'releases list' shows")],
    fmt: FormatOption = Format.csv,
    out: OutOption = None,
) -> None:
    """Write a release this node made as CSV, JSON (a rebuilt copy, not signed), FHIR or HXL."""
    from exchange.clients.release_view import provided_document
    from nodes.database import reading
    from nodes.releases import store

    with open_node(directory) as node:
        with reading(node.engine) as conn:
            stored = store.get(conn, release_id)
        if stored is None:
            fail(f"this node made no release {release_id} (or it is not complete)")
        document = provided_document(
            stored, node_id=node.settings.node_id, node_name=node.settings.name
        )
        names = {a.code: a.name for a in node.gazetteer.areas}
        text = _rendered(node, document, fmt, None, area_names=names)
    _write(text, out)
    if fmt == Format.json and out is not None:
        console.print(
            "Note: rebuilt from this node's store (type crisis-exchange/release-copy), not "
            "the bytes the partner received: those are signed and the partner keeps them.",
            highlight=False,
        )


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="Releases received from peers: list, show, verify, export.", no_args_is_help=True
    )
    group.command("list")(list_received)
    group.command("show")(show_received)
    group.command("verify")(verify_received)
    group.command("export")(export_received)
    app.add_typer(group, name="received")
    provided = typer.Typer(
        help="Releases this node made for its partners: list, export.", no_args_is_help=True
    )
    provided.command("list")(list_provided)
    provided.command("export")(export_provided)
    app.add_typer(provided, name="releases")
