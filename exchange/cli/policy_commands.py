"""``exchange policy check``, ``validate``, ``apply`` and ``exchange budget``.

``policy check`` answers, before any partner asks: what would this partner get, at what
cost, and why. It decides with the node's policy and reads the ledger; it releases and
spends nothing. Exit status: 0 allowed (and affordable), 2 denied or over budget.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from exchange.cli.common import NodeDir, console, fail, open_node, operator, utcnow
from exchange.cli.query_options import build_query

DENIED = 2


def check(
    directory: NodeDir,
    partner: Annotated[str, typer.Option(help="The partner node id, e.g. XB")],
    schema: Annotated[str, typer.Option(help="The schema id, e.g. weekly_epi@1")],
    by: Annotated[
        list[str] | None, typer.Option(help="Group by: area, area:adm1, week, week:month...")
    ] = None,
    measures: Annotated[
        str | None, typer.Option(help="Comma-separated measures (default: all allowed)")
    ] = None,
    purpose: Annotated[str | None, typer.Option(help="The purpose the partner states")] = None,
    since: Annotated[str | None, typer.Option(help="First epi week, YYYY-Www")] = None,
    until: Annotated[str | None, typer.Option(help="Last epi week, YYYY-Www")] = None,
    filter_: Annotated[
        list[str] | None,
        typer.Option("--filter", help="DIMENSION=VALUE[,VALUE...]; repeat for more"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the decision as JSON")] = False,
    escalation: Annotated[
        int | None,
        typer.Option(
            help="Also decide as if this escalation (proposed or in force) were in force, and "
            "show what it changes"
        ),
    ] = None,
) -> None:
    """What a partner would get for a query, at what cost, and why; spends nothing.

    Escalations in force count; the answer says when one made the difference."""
    from nodes.releases import pipeline

    query = build_query(
        schema=schema,
        measures=[measures] if measures else None,
        by=by,
        filter_=filter_,
        since=since,
        until=until,
        purpose=purpose,
    )
    with open_node(directory) as node:
        decision, summary = pipeline.dry_run(
            node, partner_id=partner, query=query, now=utcnow(), escalation_id=escalation
        )
    if as_json:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
    else:
        _print_decision(summary)
    affordable = decision.budget is None or decision.budget.sufficient
    if not (decision.allowed and affordable):
        raise typer.Exit(DENIED)


def _print_decision(summary: dict[str, Any]) -> None:
    verdict = "[bold green]ALLOWED[/]" if summary["allowed"] else "[bold red]DENIED[/]"
    console.print(f"{verdict} by {summary['rule']}  (policy {summary['policy_hash'][:19]}…)")
    for reason in summary["reasons"]:
        console.print(f"  • {reason}", highlight=False)
    plain = summary.get("without_escalation")
    if plain is not None:
        verdict = "allowed" if plain["allowed"] else "denied"
        console.print(f"Without the escalation: {verdict} by {plain['rule']}", highlight=False)
        for reason in plain["reasons"]:
            console.print(f"  • {reason}", highlight=False)
    effective = summary["effective"]
    if effective is None:
        return
    console.print(
        f"Effective query: {', '.join(effective['measures'])} by "
        f"{', '.join(effective['group_by']) or 'nothing (totals)'}, "
        f"{effective['since']} to {effective['until']}, filters {effective['filters'] or 'none'}",
        highlight=False,
    )
    cost = summary["cost"]
    console.print(f"Cost: {cost['epsilon']} ε ({cost['mechanism']}), {summary['cells']} cells")
    table = Table("budget", "cap ε", "spent ε", "left ε", "left after ε")
    for line in summary["budget"] or ():
        after = f"{line['left_after']}" if line["sufficient"] else "[red]insufficient[/]"
        table.add_row(
            line["account"], str(line["cap"]), str(line["spent"]), str(line["left"]), after
        )
    console.print(table)


def validate(
    file: Annotated[Path, typer.Argument(help="A policy YAML file")],
    directory: Annotated[Path, typer.Option("--node", help="The node directory it is for")],
) -> None:
    """Check a policy file against a node without installing it (file, place, reason).

    Works even when the node's current policy is broken: it reads only the node's settings
    and gazetteer, not its database or current policy."""
    from nodes.policy_file import validate_file
    from nodes.settings import NodeSettings
    from schemas.gazetteer import Gazetteer
    from schemas.registry import SchemaRegistry

    try:
        settings = NodeSettings.load(directory)
        gazetteer = Gazetteer.from_csv_text(settings.gazetteer_file.read_text(encoding="utf-8"))
        policy = validate_file(
            file, settings=settings, gazetteer=gazetteer, registry=SchemaRegistry()
        )
    except (OSError, ValueError) as exc:
        fail(str(exc))
    document = policy.document
    console.print(
        f"[green]valid[/]: {len(document.agreements)} agreement(s), "
        f"{len(document.red_lines)} red line(s), hash {policy.hash}",
        highlight=False,
    )


def apply(
    directory: NodeDir,
    file: Annotated[Path, typer.Argument(help="The new policy YAML file")],
) -> None:
    """Make a policy file the node's policy, on every worker and replica, without a restart.

    All or nothing: a file that does not validate changes nothing (file, place, reason).
    The policy is recorded in the database with its hash and audited; DIR/policy.yaml is
    rewritten with it. Running workers switch on their next request."""
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {file}: {exc}")
    with open_node(directory) as node:
        before = node.policy.hash
        try:
            policy = node.apply_policy(
                text, source=str(file.resolve()), actor=operator(), now=utcnow()
            )
        except ValueError as exc:  # PolicyError
            fail(str(exc))
    document = policy.document
    change = "unchanged" if policy.hash == before else "applied"
    console.print(
        f"[green]{change}[/]: {len(document.agreements)} agreement(s), "
        f"{len(document.red_lines)} red line(s), hash {policy.hash}",
        highlight=False,
    )


def budget(
    directory: NodeDir,
    as_json: Annotated[bool, typer.Option("--json", help="Print the accounts as JSON")] = False,
) -> None:
    """Every partner's and every global budget: cap, spent and left."""
    from nodes import ledger
    from nodes.database import reading
    from policies.accounts import accounts_in_force
    from policies.budget import show

    now = utcnow()
    with open_node(directory) as node, reading(node.engine) as conn:
        lines = ledger.report(conn, accounts_in_force(node.policy, now))
    if as_json:
        rows = [
            {
                "scope": line.charge.scope,
                "partner_id": line.charge.partner_id,
                "schema_id": line.charge.schema_id,
                "period": line.charge.period,
                "cap_micro": line.charge.cap_micro,
                "spent_micro": line.spent_micro,
                "left_micro": line.left_micro,
            }
            for line in lines
        ]
        print(json.dumps(rows, indent=2))
        return
    table = Table("account", "schema", "period", "cap", "spent", "left")
    for line in lines:
        c = line.charge
        who = "global (all partners)" if c.scope == "global" else c.partner_id
        table.add_row(
            who,
            c.schema_id,
            c.period,
            show(c.cap_micro),
            show(line.spent_micro),
            show(line.left_micro),
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Red lines, agreements and what they allow.", no_args_is_help=True)
    group.command("check")(check)
    group.command("validate")(validate)
    group.command("apply")(apply)
    app.add_typer(group, name="policy")
    app.command("budget")(budget)
