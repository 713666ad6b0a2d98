"""``exchange pull``: ask a partner node for a release, verify it, keep it, show it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from exchange.cli.common import NodeDir, console, fail, open_node
from exchange.cli.query_options import build_query

if TYPE_CHECKING:
    from exchange.clients.peer import PeerRefusedError


def _refusal(exc: PeerRefusedError) -> str:
    lines = [str(exc)]
    reasons = exc.problem.get("reasons", [])
    if reasons != [exc.problem.get("detail")]:  # one reason is the detail already shown
        lines += [f"  - {reason}" for reason in reasons]
    if "budget_left" in exc.problem:
        lines.append(
            f"  budget left: {exc.problem['budget_left']}, cost: {exc.problem.get('cost')}"
        )
    if not exc.signed:
        lines.append("  (this answer was not signed: it may not come from the peer)")
    return "\n".join(lines)


def pull_command(
    directory: NodeDir,
    from_: Annotated[str, typer.Option("--from", help="The peer to pull from (its node id)")],
    schema: Annotated[str, typer.Option(help="Schema id, e.g. weekly_epi@1")],
    by: Annotated[
        list[str] | None, typer.Option(help="Group by, e.g. area:adm1 or week; repeat or comma")
    ] = None,
    measures: Annotated[
        list[str] | None, typer.Option(help="Measures; default: all the agreement allows")
    ] = None,
    since: Annotated[str | None, typer.Option(help="First epi week, e.g. 2026-W01")] = None,
    until: Annotated[str | None, typer.Option(help="Last epi week")] = None,
    purpose: Annotated[
        str | None, typer.Option(help="Why you ask, as the agreement names it")
    ] = None,
    filter_: Annotated[
        list[str] | None, typer.Option("--filter", help="DIMENSION=VALUE[,VALUE...]; repeat")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Write the release to FILE.csv, or FILE.json as signed")
    ] = None,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to wait for the peer")] = 10.0,
) -> None:
    """Pull a differentially private release from a peer; verify, store and show it."""
    import httpx2

    from exchange.clients.peer import PeerError, PeerRefusedError
    from exchange.clients.pulling import peer_client, pull
    from exchange.clients.release_view import release_csv, release_table
    from nodes import peers
    from nodes.releases import received

    query = build_query(
        schema=schema,
        measures=measures,
        by=by,
        filter_=filter_,
        since=since,
        until=until,
        purpose=purpose,
    )
    with open_node(directory) as node, httpx2.Client() as http:
        client = peer_client(
            node, http, peers.get_peer(node.engine, from_), timeout=httpx2.Timeout(timeout)
        )
        try:
            result = pull(node, client, query)
        except PeerRefusedError as exc:
            fail(_refusal(exc))
        except PeerError as exc:
            fail(str(exc))
        stored = received.get(node.engine, result.received_id)
    if out is not None:
        if out.suffix.lower() == ".json":
            out.write_bytes(stored.response.body)  # the exact bytes the signature covers
        else:
            out.write_text(release_csv(result.document), encoding="utf-8")
        console.print(f"Wrote {out}")
    console.print(release_table(result.document, max_rows=None if out is None else 20))
    console.print(
        f"Signed by {from_}'s key {result.key_id}; stored with its signature as received "
        f"release {result.received_id}."
    )
    if result.witness is not None:
        style = "bold red" if result.witness.flagged else "green"
        console.print(
            f"{from_}'s audit log: [{style}]{result.witness.verdict}[/] ({result.witness.reason})"
        )
    _notices_after_pull(directory, from_)


def _notices_after_pull(directory: NodeDir, peer_id: str) -> None:
    """Fetch and show the correction notices waiting at the peer (not fatal: the pull is kept)."""
    import httpx2

    from exchange.cli.notice_commands import fetch_from, notice_table
    from nodes import peers
    from nodes.received_notices import listing

    with open_node(directory) as node, httpx2.Client() as http:
        new = fetch_from(node, http, peers.get_peer(node.engine, peer_id), after=None)
        shown = [n for n in listing(node.engine, peer_id=peer_id) if n.id in (new or [])]
    if shown:
        console.print(notice_table(shown, f"New correction notices from {peer_id}"))


def register(app: typer.Typer) -> None:
    app.command("pull")(pull_command)
