"""``exchange subscriptions list|add|cancel|sync``: standing subscriptions at peers, and,
on a provider, every partner's subscriptions with their cost forecast."""

from __future__ import annotations

from typing import Annotated

import typer

from exchange.cli.common import NodeDir, console, fail, open_node, operator
from exchange.cli.query_options import build_query

app = typer.Typer(help="Standing subscriptions: a question answered every week or month.")

Peer = Annotated[str, typer.Option("--peer", help="The peer (its node id)")]


@app.command("add")
def add_command(
    directory: NodeDir,
    peer: Peer,
    schema: Annotated[str, typer.Option(help="Schema id, e.g. weekly_epi@1")],
    cadence: Annotated[str, typer.Option(help="week or month")] = "week",
    by: Annotated[list[str] | None, typer.Option(help="Group by; repeat or comma")] = None,
    measures: Annotated[list[str] | None, typer.Option(help="Measures")] = None,
    since: Annotated[str | None, typer.Option(help="First epi week")] = None,
    purpose: Annotated[str | None, typer.Option(help="Why you ask")] = None,
    filter_: Annotated[
        list[str] | None, typer.Option("--filter", help="DIMENSION=VALUE[,VALUE...]; repeat")
    ] = None,
) -> None:
    """Subscribe at a peer; the peer checks its policy at once."""
    import datetime as dt

    import httpx2

    from exchange.clients import subscriptions
    from exchange.clients.peer import PeerError
    from exchange.clients.pulling import peer_client
    from nodes import peers

    query = build_query(
        schema=schema,
        measures=measures,
        by=by,
        filter_=filter_,
        since=since,
        until=None,
        purpose=purpose,
    )
    with open_node(directory) as node, httpx2.Client() as http:
        client = peer_client(node, http, peers.get_peer(node.engine, peer))
        try:
            doc = subscriptions.subscribe(node, client, query, cadence, now=dt.datetime.now(dt.UTC))
        except PeerError as exc:
            fail(str(exc))
    forecast = doc.get("forecast") or {}
    console.print(
        f"Subscribed at {peer}: subscription {doc['id']}, {cadence}ly from {doc['first_period']}."
    )
    if forecast:
        console.print(forecast["sentence"])


@app.command("cancel")
def cancel_command(
    directory: NodeDir,
    subscription: Annotated[int, typer.Argument(help="The subscription id")],
    peer: Annotated[
        str | None, typer.Option("--peer", help="The peer; omit to cancel a partner's here")
    ] = None,
) -> None:
    """Cancel our subscription at a peer, or (without --peer) a partner's at this node."""
    import datetime as dt

    import httpx2

    from exchange.clients import subscriptions as ours
    from exchange.clients.peer import PeerError
    from exchange.clients.pulling import peer_client
    from nodes import peers, subscriptions
    from schemas.errors import NotFoundError

    now = dt.datetime.now(dt.UTC)
    with open_node(directory) as node:
        if peer is None:
            try:
                subscriptions.cancel(node, subscription, partner_id=None, actor=operator(), now=now)
            except NotFoundError as exc:
                fail(str(exc))
        else:
            with httpx2.Client() as http:
                client = peer_client(node, http, peers.get_peer(node.engine, peer))
                try:
                    ours.cancel(node, client, subscription, now=now)
                except PeerError as exc:
                    fail(str(exc))
    console.print(f"Subscription {subscription} cancelled.")


@app.command("list")
def list_command(directory: NodeDir) -> None:
    """Ours at peers (as last seen); partners' here: periods made, ε spent, forecast."""
    import datetime as dt

    from exchange.clients import subscriptions as ours
    from nodes import subscriptions
    from policies.budget import show

    with open_node(directory) as node:
        mine = ours.ours(node)
        theirs = subscriptions.listing(node, partner_id=None, now=dt.datetime.now(dt.UTC))
    console.print("Ours at peers:" if mine else "Ours at peers: none")
    for s in mine:
        state = "active" if s["ended_at"] is None else f"ended ({s['end_reason']})"
        console.print(
            f"  {s['peer_id']} #{s['subscription_id']} {s['cadence']}: {state}; "
            f"stored {len(s['stored'])} period(s); budget lasts {s['releases_left']} more"
        )
    console.print("Partners' with us:" if theirs else "Partners' with us: none")
    for v in theirs:
        sub = v.subscription
        state = "active" if sub.active else f"ended by {sub.ended_by} ({sub.end_reason})"
        ahead = (
            ""
            if v.forecast is None
            else (
                f"; at this rate {v.forecast.account} lasts {v.forecast.releases_left} more releases"
            )
        )
        console.print(
            f"  #{sub.id} {sub.partner_id} {sub.query.schema_id} {sub.cadence}: {state}; "
            f"made {len(v.made)} of {len(v.due)} due, spent {show(v.spent_micro)}{ahead}"
        )


@app.command("sync")
def sync_command(
    directory: NodeDir,
    peer: Annotated[str | None, typer.Option("--peer", help="Only this peer")] = None,
) -> None:
    """Fetch every due release from every peer we subscribed at; safe to run from cron."""
    import httpx2

    from exchange.clients import subscriptions

    with open_node(directory) as node, httpx2.Client() as http:
        report = subscriptions.sync(node, http, peer_id=peer)
    for pid, sub_id, period, received_id in report.stored:
        console.print(f"{pid} #{sub_id} {period}: stored as received release {received_id}")
    for problem in report.failed:
        console.print(f"[red]{problem}[/]")
    console.print(f"{len(report.stored)} release(s) stored.")
    if report.failed:
        raise typer.Exit(1)


def register(parent: typer.Typer) -> None:
    parent.add_typer(app, name="subscriptions")
