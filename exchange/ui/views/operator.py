"""The operator's pages: the node, what came in and went out, budgets, peers.

Each page reads what the API and the CLI read, through the same functions: the identity key
(`nodes.keys`), the readiness checks of ``/readyz`` (`exchange.api.routes.health`), the audit
log's summary (`nodes.audit.status`), report and release counts (`nodes.reports.summary`,
`nodes.releases.store.counts`), refusals from the audit index (`nodes.audit.summary`), the
ledger as ``exchange budget`` shows it (`nodes.ledger.report` with the policy's accounts in
force) and the peer registry with the witness's flags (``exchange peer list``). What none of
them answered yet (inflow per week, the newest refusals, last contact) is in `nodes.activity`.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections import defaultdict
from typing import Any

from babel.dates import format_timedelta
from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from exchange.api.dependencies import NodeDep
from exchange.api.routes import health
from exchange.ui.pages import page_router
from exchange.ui.rendering import render
from exchange.ui.sessions import OperatorViewer
from nodes import activity, keys, ledger, peers, reports
from nodes.audit import status as audit_status
from nodes.audit import summary as audit_summary
from nodes.audit import witness
from nodes.audit.canonical import parse_time
from nodes.database import reading
from nodes.identity import public_key_text
from nodes.node import Node
from nodes.releases import store
from policies.accounts import BudgetLine, accounts_in_force
from schemas.labels import Language

router = page_router()

#: Weeks of inflow the flows page shows, this one included.
INFLOW_WEEKS = 12
#: Newest refusals the flows page quotes.
REFUSAL_EXAMPLES = 10
#: A budget spent this far is drawn in the warning colour (and said in words).
HIGH_SHARE = 0.8


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@router.get("/ui/operator")
async def node_page(request: Request, _viewer: OperatorViewer, node: NodeDep) -> Response:
    now = _now()
    ready, checks, details = await health.readiness(node)
    ring = await run_in_threadpool(
        functools.partial(keys.key_ring, node.settings.keys_dir, now=now)
    )
    audit: dict[str, Any] | None = details.get("audit")
    if audit is None:  # not ready: the page still says why, from the checks
        audit = await run_in_threadpool(
            functools.partial(audit_status.summary, node.engine, now=now)
        )
    checkpoint = audit["checkpoint"]
    age = None
    if checkpoint is not None:
        age = format_timedelta(
            dt.timedelta(seconds=checkpoint["age_seconds"]), locale=request.state.language
        )
    watched = await run_in_threadpool(_witnessed, node)
    current = node.key
    return render(
        request,
        "operator/node.html",
        {
            "settings": node.settings,
            "key_id": current.kid,
            "public_key": public_key_text(current.public_key),
            "ring": ring,
            "checks": checks,
            "ready": ready,
            "audit": audit,
            "checkpoint_time": parse_time(checkpoint["time"]) if checkpoint else None,
            "checkpoint_age": age,
            "flagged": [{**f, "since": parse_time(f["since"])} for f in audit["flagged_peers"]],
            "epochs": [{**e, "accepted": parse_time(e["accepted"])} for e in audit["peer_epochs"]],
            "witnessed": watched,
        },
    )


def _witnessed(node: Node) -> list[str]:
    """The peers whose checkpoints this node keeps: the logs it witnesses."""
    found = peers.list_peers(node.engine)
    contacts = activity.last_contacts(node.engine, [p.id for p in found])
    return [p.id for p in found if contacts[p.id].checkpoint_seen is not None]


@router.get("/ui/operator/flows")
async def flows_page(request: Request, _viewer: OperatorViewer, node: NodeDep) -> Response:
    now = _now()
    monday = now.date() - dt.timedelta(days=now.weekday())
    start = monday - dt.timedelta(weeks=INFLOW_WEEKS - 1)
    since = dt.datetime.combine(start, dt.time(), tzinfo=dt.UTC)
    weekly = await run_in_threadpool(
        functools.partial(activity.inflow_by_week, node.engine, since=since)
    )
    totals = await run_in_threadpool(reports.summary, node.engine)
    outflow = await run_in_threadpool(_release_counts, node)
    refusals = await run_in_threadpool(audit_summary.release_refusals, node.engine)
    unsigned = await run_in_threadpool(
        functools.partial(audit_summary.outcome_counts, node.engine, action="release.request")
    )
    examples = await run_in_threadpool(
        functools.partial(activity.recent_refusals, node.engine, limit=REFUSAL_EXAMPLES)
    )
    refused = sorted(refusals.items(), key=lambda item: (-item[1], item[0]))
    return render(
        request,
        "operator/flows.html",
        {
            "since": start,
            "weeks": INFLOW_WEEKS,
            "weekly": weekly,
            "totals": totals,
            "outflow": outflow,
            "refused": refused,
            "refused_total": sum(refusals.values()),
            "unsigned": sum(n for (outcome, *_rest), n in unsigned.items() if outcome == "denied"),
            "examples": examples,
            "schema_label": functools.partial(_schema_label, node, request.state.language),
        },
    )


def _release_counts(node: Node) -> list[tuple[str, str, str, int]]:
    with reading(node.engine) as conn:
        return store.counts(conn)


def _schema_label(node: Node, language: Language, schema_id: str) -> str:
    if schema_id in node.registry:
        return node.registry.get(schema_id).label.get(language)
    return schema_id


@router.get("/ui/operator/budgets")
async def budgets_page(request: Request, _viewer: OperatorViewer, node: NodeDep) -> Response:
    now = _now()
    lines = await run_in_threadpool(_budget_report, node, now)
    by_partner: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in lines:
        by_partner[line.charge.partner_id].append(bar(line))
    shared = by_partner.pop("*", [])
    return render(
        request,
        "operator/budgets.html",
        {
            "shared": shared,
            "partners": sorted(by_partner.items()),
            "schema_label": functools.partial(_schema_label, node, request.state.language),
        },
    )


def _budget_report(node: Node, now: dt.datetime) -> list[BudgetLine]:
    """What ``exchange budget`` prints: the ledger against the caps of the policy in force."""
    with reading(node.engine) as conn:
        return ledger.report(conn, accounts_in_force(node.policy, now))


def bar(line: BudgetLine) -> dict[str, Any]:
    """A ledger line as a bar: ε amounts, the share spent (0 to 1) and whether it is high.

    The bar is an SVG whose fill is a ``rect`` with a ``width`` attribute (0 to 100 in a
    ``viewBox`` of 100): an attribute, not a ``style``, so the page's CSP allows it.
    """
    cap = line.charge.cap_micro
    share = min(1.0, line.spent_micro / cap) if cap else (1.0 if line.spent_micro else 0.0)
    return {
        "schema_id": line.charge.schema_id,
        "period": line.charge.period,
        "cap": line.charge.cap_micro / 1_000_000,
        "spent": line.spent_micro / 1_000_000,
        "left": line.left_micro / 1_000_000,
        "share": share,
        "width": round(share * 100, 2),
        "high": share >= HIGH_SHARE,
    }


@router.get("/ui/operator/peers")
async def peers_page(request: Request, _viewer: OperatorViewer, node: NodeDep) -> Response:
    now = _now()
    found, flagged, epochs, contacts = await run_in_threadpool(_peer_list, node)
    rows = []
    for peer in found:
        rows.append(
            {
                "peer": peer,
                "contact": contacts[peer.id],
                "flag": flagged.get(peer.id),
                "epochs": epochs.get(peer.id, []),
                "keys": [{"key": k, "state": _key_state(peer, k, now)} for k in peer.keys],
            }
        )
    return render(request, "operator/peers.html", {"rows": rows})


def _peer_list(
    node: Node,
) -> tuple[
    list[peers.Peer],
    dict[str, witness.FlaggedPeer],
    dict[str, list[witness.DeclaredEpoch]],
    dict[str, activity.Contact],
]:
    """What ``exchange peer list`` reads, plus when each peer was last heard from."""
    found = peers.list_peers(node.engine)
    flagged = {f.peer_id: f for f in witness.flagged_peers(node.engine)}
    declared: dict[str, list[witness.DeclaredEpoch]] = defaultdict(list)
    for epoch in witness.declared_epochs(node.engine):
        declared[epoch.peer_id].append(epoch)
    contacts = activity.last_contacts(node.engine, [p.id for p in found])
    return found, flagged, declared, contacts


def _key_state(peer: peers.Peer, key: peers.PeerKey, now: dt.datetime) -> str:
    """As ``exchange peer list`` says it: revoked, usable or expired."""
    if key.revoked_at:
        return "revoked"
    return "usable" if key.usable_at(now) and not peer.removed_at else "expired"
