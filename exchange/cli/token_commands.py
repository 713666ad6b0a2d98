"""Issuing, listing, rotating and revoking bearer tokens. A token's secret is shown once, here."""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from exchange.cli.common import NodeDir, console, fail, open_node, operator, utcnow
from nodes.access import Role  # light: typer reads it for --help

if TYPE_CHECKING:
    from nodes import tokens


def _duration(text: str | None, *, allow_zero: bool) -> dt.timedelta | None:
    from nodes import tokens
    from schemas.errors import InvalidInputError

    if text is None:
        return None
    try:
        return tokens.parse_duration(text, allow_zero=allow_zero)
    except InvalidInputError as exc:
        fail(str(exc))


def create(
    directory: NodeDir,
    name: Annotated[str, typer.Option(help="Who holds it, e.g. moh-surveillance")],
    role: Annotated[Role, typer.Option(help="What the token may do")] = "agency",
    schema: Annotated[
        list[str] | None, typer.Option(help="A schema id the agency may push; repeat")
    ] = None,
    expires: Annotated[
        str | None,
        typer.Option(help="Lifetime, e.g. 12h, 90d or 2w; default: until revoked"),
    ] = None,
) -> None:
    """Issue a token. The secret is printed once and stored only as a hash."""
    from nodes import tokens

    lifetime = _duration(expires, allow_zero=False)
    with open_node(directory) as node:
        record, secret = tokens.issue_token(
            node.engine,
            name=name,
            role=role,
            schemas=tuple(schema or ()),
            now=utcnow(),
            actor=operator(),
            lifetime=lifetime,
        )
    until = f", expires {_when(record.expires_at)} UTC" if record.expires_at else ""
    console.print(
        f"Token [bold]{record.name}[/] ({record.role}{until}) created. Its secret, shown only now:"
    )
    print(secret)


def _when(moment: dt.datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M}" if moment else ""


def _rotation(token: tokens.TokenRecord, now: dt.datetime) -> str:
    if token.rotated_at is None:
        return ""
    old = token.previous_expires_at
    if old is not None and old > now:
        return f"rotated {_when(token.rotated_at)}; old secret valid until {_when(old)}"
    return f"rotated {_when(token.rotated_at)}"


def _state(token: tokens.TokenRecord, now: dt.datetime) -> str:
    if token.revoked_at is not None:
        return f"revoked {_when(token.revoked_at)}"
    if token.expires_at is not None and token.expires_at <= now:
        return "expired"
    return "active"


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def list_tokens(
    directory: NodeDir,
    as_json: Annotated[bool, typer.Option("--json", help="Print the tokens as JSON")] = False,
) -> None:
    """List tokens (never their secrets), with expiry, last use and rotation (times in UTC)."""
    from nodes import tokens

    with open_node(directory) as node:
        found = tokens.list_all(node.engine)
    now = utcnow()
    if as_json:
        rows = [
            {
                "name": t.name,
                "role": t.role,
                "schemas": list(t.schemas),
                "state": _state(t, now).split(" ")[0],
                "created_at": _iso(t.created_at),
                "revoked_at": _iso(t.revoked_at),
                "expires_at": _iso(t.expires_at),
                "last_used_at": _iso(t.last_used_at),
                "rotated_at": _iso(t.rotated_at),
                "previous_secret_valid_until": _iso(t.previous_expires_at)
                if t.previous_expires_at and t.previous_expires_at > now
                else None,
            }
            for t in found
        ]
        print(json.dumps(rows, indent=2))
        return
    table = Table("name", "role", "schemas", "state", "created", "expires", "last used", "rotation")
    for t in found:
        table.add_row(
            t.name,
            t.role,
            ", ".join(t.schemas),
            _state(t, now),
            _when(t.created_at),
            _when(t.expires_at) or "never",
            _when(t.last_used_at) or "never",
            _rotation(t, now),
        )
    console.print(table)


def rotate(
    directory: NodeDir,
    name: Annotated[str, typer.Argument(help="The token's name")],
    grace: Annotated[
        str,
        typer.Option(help="How long the old secret keeps working: 0, 12h, 7d, 2w"),
    ],
) -> None:
    """Give a token a new secret (same name, role and schemas); the old one works for --grace."""
    from nodes import tokens

    period = _duration(grace, allow_zero=True)
    assert period is not None
    with open_node(directory) as node:
        record, secret = tokens.rotate_token(
            node.engine, name=name, grace=period, now=utcnow(), actor=operator()
        )
    old = (
        f"The old secret works until {_when(record.previous_expires_at)} UTC."
        if period
        else "The old secret no longer works."
    )
    console.print(f"Token [bold]{record.name}[/] rotated. {old} The new secret, shown only now:")
    print(secret)


def revoke(
    directory: NodeDir, name: Annotated[str, typer.Argument(help="The token's name")]
) -> None:
    """Revoke a token at once; its holder gets 401 from now on."""
    from nodes import tokens

    with open_node(directory) as node:
        record = tokens.revoke_token(node.engine, name=name, now=utcnow(), actor=operator())
    console.print(f"Token [bold]{record.name}[/] revoked.")


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="Bearer tokens for agencies, auditors and operators.", no_args_is_help=True
    )
    group.command("create")(create)
    group.command("list")(list_tokens)
    group.command("rotate")(rotate)
    group.command("revoke")(revoke)
    app.add_typer(group, name="token")
