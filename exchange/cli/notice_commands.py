"""``exchange notices``: fetch the correction notices peers hold for us, keep them, show them.

A notice says a peer's agency corrected weeks of a schema that releases we received
covered; those releases are marked superseded (``exchange received list`` shows it). The
numbers in them are not replaced: asking again is a new release, charged as usual.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from exchange.cli.common import NodeDir, console, open_node

if TYPE_CHECKING:
    import httpx2
    from rich.table import Table

    from nodes.node import Node
    from nodes.peers import Peer
    from nodes.received_notices import ReceivedNotice


def notice_table(shown: list[ReceivedNotice], title: str) -> Table:
    """The notices as the partner reads them: which releases, which schema and weeks."""
    from rich.markup import escape
    from rich.table import Table

    table = Table("#", "from", "notice", "schema", "corrected weeks", "releases", title=title)
    for notice in shown:
        document = notice.document
        marked = ", ".join(f"#{i}" for i in notice.superseded) or "none held"
        table.add_row(
            str(notice.id),
            escape(notice.peer_id),
            str(notice.notice_id),
            escape(notice.schema_id),
            escape(", ".join(str(w) for w in document.get("weeks", [])) or "all"),
            escape(", ".join(str(i) for i in document.get("release_ids", [])))
            + f" (received {marked})",
        )
    return table


def fetch_from(
    node: Node, http: httpx2.Client, peer: Peer, *, after: int | None
) -> list[int] | None:
    """Fetch ``peer``'s notices after ``after`` (default: the last one held); say what came.
    Returns the ids of the notices new to us, or None (having said why) if the peer could
    not give them."""
    import httpx2
    from rich.markup import escape

    from exchange.clients.notices import fetch
    from exchange.clients.peer import PeerError
    from exchange.clients.pulling import peer_client
    from nodes.received_notices import last_notice_id

    client = peer_client(node, http, peer, timeout=httpx2.Timeout(10.0))
    start = last_notice_id(node.engine, peer.id) if after is None else after
    try:
        got = fetch(node, client, after=start)
    except PeerError as exc:
        console.print(f"[red]{escape(str(exc))}[/]")
        return None
    console.print(
        f"{escape(peer.id)}: {got.fetched} notice(s) fetched, {len(got.stored)} new, "
        "signature verified" + ("" if got.fetched else " (nothing waiting)"),
        highlight=False,
    )
    return got.stored


def notices_command(
    directory: NodeDir,
    peer: Annotated[
        str | None, typer.Option("--peer", help="Only this peer (its node id); default: all")
    ] = None,
    from_: Annotated[
        int | None,
        typer.Option(
            "--from", min=0, help="Notices after this id; default: after the last one held"
        ),
    ] = None,
) -> None:
    """Fetch correction notices from every peer (or one), verify and keep them, show them."""
    import httpx2

    from nodes import peers
    from nodes.received_notices import listing

    with open_node(directory) as node, httpx2.Client() as http:
        chosen = [peers.get_peer(node.engine, peer)] if peer else peers.list_peers(node.engine)
        ok = [fetch_from(node, http, p, after=from_) for p in chosen]
        shown = listing(node.engine, peer_id=peer, after=from_ or 0)
    console.print(notice_table(shown, f"{len(shown)} correction notice(s) received"))
    if None in ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("notices")(notices_command)
