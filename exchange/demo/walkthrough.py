"""``exchange demo``: three fictional nations exchange outbreak data, start to finish.

XA, XB and XC each run a real node on a loopback port, receive their own synthetic outbreak
from their ministry of health (through the agency API), and pull from each other over
signed HTTP. Each nation's policy lets its close partner see weekly counts by province
(admin level 1) and its far partner only national weekly totals; deaths are a red line
that no agreement can open. The demo shows what each received with its accuracy, a
denied request with its reason, a cached repeat that cost nothing, and the budgets left.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
from rich.console import Console
from rich.table import Table

from exchange.clients.peer import PeerRefusedError
from exchange.clients.pulling import PullResult, peer_client, pull
from exchange.clients.release_view import release_table
from exchange.demo.cluster import DemoNode, free_port, prepare, push_outbreak, running
from exchange.demo.data import outbreak_weeks
from nodes import ledger, peers
from nodes.audit import checkpoint_store
from nodes.database import reading
from nodes.identity import load_current
from policies.budget import epsilon
from policies.query import ReleaseQuery

SCHEMA = "weekly_epi@1"
PURPOSE = "outbreak_response"


@dataclass
class DemoResult:
    """What the demo did, for tests and for ``--keep-running``."""

    nodes: list[DemoNode]
    pushed: dict[str, int] = field(default_factory=dict)
    received: list[PullResult] = field(default_factory=list)
    denials: list[PeerRefusedError] = field(default_factory=list)
    cached: PullResult | None = None
    budgets: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _query(*group_by: str, measures: tuple[str, ...] = ()) -> ReleaseQuery:
    weeks = outbreak_weeks(_now().date())
    return ReleaseQuery(
        schema_id=SCHEMA,
        measures=measures,
        group_by=group_by,
        since=weeks[0],
        until=weeks[-1],
        purpose=PURPOSE,
    )


def _pull(
    puller: DemoNode, source: DemoNode, http: httpx2.Client, query: ReleaseQuery
) -> PullResult:
    node = puller.opened
    client = peer_client(node, http, peers.get_peer(node.engine, source.id))
    return pull(node, client, query)


def _budgets(demo: DemoNode) -> list[dict[str, Any]]:
    with reading(demo.opened.engine) as conn:
        lines = ledger.all_lines(conn)
    return [
        {
            "node": demo.id,
            "account": "all partners" if line.charge.scope == "global" else line.charge.partner_id,
            "period": line.charge.period,
            "spent": epsilon(line.spent_micro),
            "cap": epsilon(line.charge.cap_micro),
            "left": epsilon(line.left_micro),
        }
        for line in lines
    ]


def _nodes_table(nodes: list[DemoNode]) -> Table:
    table = Table("node", "URL", "provinces to", "national totals to", "never leaves")
    for demo in nodes:
        table.add_row(
            f"{demo.id} {demo.nation.name}",
            demo.url,
            demo.nation.close_partner,
            demo.nation.far_partner,
            "deaths",
        )
    return table


def _summary(results: list[PullResult]) -> Table:
    table = Table(
        "received by",
        "from",
        "grouped by",
        "cells",
        "measures (± 95% accuracy)",
        "ε",
        "cached",
        title="What each nation received",
    )
    for result in results:
        release = result.release
        accuracy = ", ".join(f"{m} ±{a:g}" for m, a in release["accuracy"].items())
        table.add_row(
            result.document["recipient"]["id"],
            result.peer_id,
            " × ".join(release["query"]["group_by"]),
            str(len(release["cells"])),
            accuracy,
            f"{release['epsilon_spent']:g}",
            "yes" if result.cached else "no",
        )
    return table


def _budget_table(result: DemoResult) -> Table:
    table = Table("node", "budget of", "period", "spent ε", "cap ε", "left ε", title="Budgets left")
    for rows in result.budgets.values():
        for row in rows:
            table.add_row(
                row["node"], row["account"], row["period"],
                f"{row['spent']:g}", f"{row['cap']:g}", f"{row['left']:g}",
            )  # fmt: skip
    return table


def run(
    directory: Path,
    *,
    console: Console,
    keep_running: bool = False,
    wait: Callable[[DemoResult], None] | None = None,
) -> DemoResult:
    """Build, serve and exercise the three nodes in ``directory``; see the module doc."""
    started = time.monotonic()
    urls = {nation: f"http://127.0.0.1:{free_port()}" for nation in ("XA", "XB", "XC")}
    nodes = prepare(directory, urls)
    by_id = {n.id: n for n in nodes}
    result = DemoResult(nodes)
    console.rule("[bold]Three nations, three nodes")
    console.print(_nodes_table(nodes))
    for demo in nodes:
        kid = load_current(demo.settings.keys_dir).kid
        console.print(f"{demo.id}'s key fingerprint (what partners pin): {kid}")
    with running(nodes), httpx2.Client(timeout=30) as http:
        console.rule("[bold]Each ministry pushes its outbreak to its own node")
        for demo in nodes:
            with httpx2.Client(base_url=demo.url, timeout=60) as agency:
                result.pushed[demo.id] = push_outbreak(demo, agency)
            console.print(f"{demo.id}: {result.pushed[demo.id]} rows of {SCHEMA} stored")

        console.rule("[bold]Each nation pulls from the other two (signed, verified, stored)")
        for puller in nodes:
            close_source = by_id[puller.nation.far_partner]  # I am its close partner
            far_source = by_id[puller.nation.close_partner]  # I am its far partner
            result.received.append(_pull(puller, close_source, http, _query("area:adm1", "week")))
            result.received.append(_pull(puller, far_source, http, _query("area:adm0", "week")))
        console.print(_summary(result.received))
        console.print(release_table(result.received[0].document, max_rows=8))

        console.rule("[bold]Refused: beyond the agreement, and across a red line")
        xa, xb, xc = by_id["XA"], by_id["XB"], by_id["XC"]
        for puller, source, query in (
            (xc, xa, _query("area:adm1", "week")),
            (xb, xa, _query("area:adm1", "week", measures=("deaths",))),
        ):
            try:
                _pull(puller, source, http, query)
            except PeerRefusedError as refused:
                result.denials.append(refused)
                reasons = "; ".join(refused.problem.get("reasons", [])) or refused.what
                console.print(f"{puller.id} asked {source.id}: [red]{refused.status}[/] {reasons}")

        console.rule("[bold]Asking again: the stored release, no budget spent")
        result.cached = _pull(xb, xa, http, _query("area:adm1", "week"))
        release = result.cached.release
        console.print(
            f"XB asked XA the same question: release {release['release_id']} again, "
            f"cached={release['cached']}, ε spent {release['epsilon_spent']:g}"
        )
        result.budgets = {demo.id: _budgets(demo) for demo in nodes}
        for demo in nodes:  # the log, and the public page read from it, cover all of this now
            assert demo.node is not None
            checkpoint_store.sign(demo.node.engine, demo.node.key.private_key, now=_now())
        console.print(_budget_table(result))
        console.print(f"Done in {time.monotonic() - started:.1f} s.")
        if keep_running:
            _explore(console, nodes)
            if wait is not None:
                wait(result)  # the nodes serve until it returns
    return result


def _quarter() -> str:
    today = _now()
    return f"{today.year}-Q{(today.month - 1) // 3 + 1}"


def _explore(console: Console, nodes: list[DemoNode]) -> None:
    console.rule("[bold]The nodes keep running: explore them")
    for demo in nodes:
        console.print(
            f"{demo.id}: dashboard {demo.url}/ui/   API {demo.url}/docs   "
            f"descriptor {demo.url}/.well-known/exchange-node\n"
            f"    public transparency page {demo.url}/ui/transparency\n"
            f"    directory {demo.settings.directory}"
        )
        for role, secret in demo.tokens.items():
            console.print(f"    sign in as {role:<8} {secret}", soft_wrap=True)
    first = nodes[1]
    console.print(
        "Try:\n"
        f"  exchange pull {first.settings.directory} --from XA --schema {SCHEMA} "
        f"--by area:adm1,week --purpose {PURPOSE}\n"
        f"  exchange peer list {first.settings.directory}\n"
        f"  exchange audit checkpoint {nodes[0].settings.directory}\n"
        f"  exchange report after-action {nodes[0].settings.directory} --format html "
        "--out after-action.html\n"
        f"  exchange report transparency {nodes[0].settings.directory} --period {_quarter()}\n"
        "Press Ctrl-C to stop."
    )
