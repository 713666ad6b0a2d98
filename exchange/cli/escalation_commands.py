"""``exchange escalation propose|approve|revoke|list``: the two-person emergency escalation.

Proposing, approving and revoking take an operator token (``--token`` or the
``EXCHANGE_OPERATOR_TOKEN`` variable), because the two-person rule needs to know who is
who: the CLI's OS account is not enough, two operators may share the machine.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from exchange.cli.common import NodeDir, console, fail, open_node, utcnow

if TYPE_CHECKING:
    from nodes.node import Node
    from nodes.tokens import TokenRecord
    from policies.document import DimensionRule

Token = Annotated[
    str,
    typer.Option(
        envvar="EXCHANGE_OPERATOR_TOKEN",
        help="Your operator token (or EXCHANGE_OPERATOR_TOKEN): the two-person rule's 'who'",
        show_default=False,
    ),
]


def _operator(node: Node, secret: str) -> TokenRecord:
    from nodes import tokens

    record = tokens.authenticate(node.engine, secret, now=utcnow())  # revoked: refused
    if record.role != "operator":
        fail(f"token '{record.name}' is {record.role}; escalations need an operator token")
    return record


def _dimension(text: str) -> tuple[str, DimensionRule]:
    from policies.document import DimensionRule

    name, sep, value = text.partition("=")
    if not sep or not name:
        fail(f"--dimension {text!r}: write NAME=LEVEL (area=2) or NAME=week|month")
    if value == "week":
        return name, DimensionRule(period="week")
    if value == "month":
        return name, DimensionRule(period="month")
    if not value.isdigit():
        fail(f"--dimension {text!r}: the value is an admin level (a number) or week or month")
    return name, DimensionRule(level=int(value))


def propose(
    directory: NodeDir,
    agreement: Annotated[str, typer.Option(help="The agreement to widen, e.g. XB-epi-2026")],
    hours: Annotated[int, typer.Option(help="How long it lasts once approved")],
    reason: Annotated[str, typer.Option(help="Why: the auditors and the partner read it")],
    token: Token,
    partner: Annotated[
        list[str] | None, typer.Option(help="A partner of the agreement (default: all)")
    ] = None,
    measure: Annotated[list[str] | None, typer.Option(help="A measure to add")] = None,
    dimension: Annotated[
        list[str] | None,
        typer.Option(help="A finer rule: area=2 (admin level), week=week; repeat for more"),
    ] = None,
    epsilon: Annotated[float | None, typer.Option(help="A higher ε for each release")] = None,
    budget: Annotated[float | None, typer.Option(help="A higher budget ε for the partner")] = None,
) -> None:
    """Propose a temporary widening of an agreement; nothing changes until a second operator
    approves it."""
    from nodes import escalations
    from policies.escalation import Proposal, Widening

    widening = Widening(
        measures=tuple(measure or ()),
        dimensions=dict(_dimension(d) for d in dimension or ()),
        epsilon=epsilon,
        budget=budget,
    )
    now = utcnow()
    with open_node(directory) as node:
        made = escalations.propose(
            node.engine,
            node.policy,
            operator=_operator(node, token),
            proposal=Proposal(agreement, tuple(partner or ()), widening, hours),
            reason=reason,
            now=now,
        )
    console.print(
        f"Proposed escalation {made.id}: {made.widening.describe()} for "
        f"{', '.join(made.partners)}, {made.hours} hours once approved. A second operator "
        f"approves it with: exchange escalation approve {directory} {made.id}",
        highlight=False,
    )


def approve(
    directory: NodeDir,
    escalation_id: Annotated[int, typer.Argument(help="The escalation's number")],
    token: Token,
) -> None:
    """Approve another operator's proposal; it is in force at once, on every worker."""
    from nodes import escalations

    now = utcnow()
    with open_node(directory) as node:
        done = escalations.approve(
            node.engine,
            node.policy,
            operator=_operator(node, token),
            escalation_id=escalation_id,
            now=now,
        )
    assert done.ends_at is not None
    console.print(
        f"Escalation {done.id} is in force until {done.ends_at:%Y-%m-%d %H:%M} UTC "
        f"(proposed by {done.proposed_by}, approved by {done.approved_by}).",
        highlight=False,
    )


def revoke(
    directory: NodeDir,
    escalation_id: Annotated[int, typer.Argument(help="The escalation's number")],
    token: Token,
) -> None:
    """End an escalation now, or withdraw a proposal."""
    from nodes import escalations

    with open_node(directory) as node:
        done = escalations.revoke(
            node.engine, operator=_operator(node, token), escalation_id=escalation_id, now=utcnow()
        )
    console.print(f"Escalation {done.id} is {done.status(utcnow())}.", highlight=False)


def list_(
    directory: NodeDir,
    as_json: Annotated[bool, typer.Option("--json", help="Print them as JSON")] = False,
) -> None:
    """Every escalation, newest first, with who proposed and approved it, and until when."""
    from nodes import escalations

    now = utcnow()
    with open_node(directory) as node:
        escalations.close_ended(node.engine, now)
        found = [e.summary(now) for e in escalations.listing(node.engine)]
    if as_json:
        print(json.dumps(found, indent=2, ensure_ascii=False))
        return
    if not found:
        console.print("No escalations.")
        return
    table = Table(
        "id", "status", "agreement", "partners", "widens", "proposed by", "approved by", "until"
    )
    for e in found:
        table.add_row(*_row(e))
    console.print(table)


def _row(e: dict[str, Any]) -> list[str]:
    until = e["ends_at"] or (f"(lapses {e['lapses_at'][:16]})" if e["lapses_at"] else "")
    return [
        str(e["id"]),
        e["status"],
        e["agreement"],
        ", ".join(e["partners"]),
        e["widens_text"],
        e["proposed_by"],
        e["approved_by"] or "",
        until[:16].replace("T", " "),
    ]


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Emergency escalations: two operators, an automatic end.")
    group.command("propose")(propose)
    group.command("approve")(approve)
    group.command("revoke")(revoke)
    group.command("list")(list_)
    app.add_typer(group, name="escalation")
