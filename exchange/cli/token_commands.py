"""Issuing, listing and revoking bearer tokens. A token's secret is shown once, here."""

from __future__ import annotations

from typing import Annotated, cast

import typer
from rich.table import Table

from exchange.cli.common import NodeDir, console, open_node, operator, utcnow
from nodes import tokens


def create(
    directory: NodeDir,
    name: Annotated[str, typer.Option(help="Who holds it, e.g. moh-surveillance")],
    role: Annotated[str, typer.Option(help="agency, auditor or operator")] = "agency",
    schema: Annotated[
        list[str] | None, typer.Option(help="A schema id the agency may push; repeat")
    ] = None,
) -> None:
    """Issue a token. The secret is printed once and stored only as a hash."""
    with open_node(directory) as node:
        record, secret = tokens.issue_token(
            node.engine,
            name=name,
            role=cast(tokens.Role, role),
            schemas=tuple(schema or ()),
            now=utcnow(),
            actor=operator(),
        )
    console.print(
        f"Token [bold]{record.name}[/] ({record.role}) created. Its secret, shown only now:"
    )
    print(secret)


def list_tokens(directory: NodeDir) -> None:
    """List tokens (never their secrets)."""
    with open_node(directory) as node:
        found = tokens.list_all(node.engine)
    table = Table("name", "role", "schemas", "created", "revoked")
    for t in found:
        table.add_row(
            t.name,
            t.role,
            ", ".join(t.schemas),
            f"{t.created_at:%Y-%m-%d %H:%M}",
            f"{t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "",
        )
    console.print(table)


def revoke(
    directory: NodeDir, name: Annotated[str, typer.Argument(help="The token's name")]
) -> None:
    """Revoke a token at once; its holder gets 401 from now on."""
    with open_node(directory) as node:
        record = tokens.revoke_token(node.engine, name=name, now=utcnow(), actor=operator())
    console.print(f"Token [bold]{record.name}[/] revoked.")


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="Bearer tokens for agencies, auditors and operators.", no_args_is_help=True
    )
    group.command("create")(create)
    group.command("list")(list_tokens)
    group.command("revoke")(revoke)
    app.add_typer(group, name="token")
