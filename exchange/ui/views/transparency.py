"""The public transparency page: what this node released, to whom, and at what privacy cost.

No sign-in: anyone may read it once the operator turns it on (``public_transparency``);
until then it answers the same 404 page as an address that does not exist, so it reveals
nothing, not even that it could be turned on. It shows counts and ε only, never a cell, a
value, an area, a query or a refusal's reason: the readers are the public, and the page
must hold nothing a partner could not already publish about itself.

Every figure comes from the functions the metrics and ``exchange budget`` read:
`nodes.releases.store.counts`, `nodes.audit.summary.release_refusals` and
`nodes.ledger.report` with the accounts the policy charges now. This module only lines
them up per partner and schema.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections import Counter
from dataclasses import dataclass

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from exchange import i18n
from exchange.api.dependencies import NodeDep
from exchange.ui.pages import error_page, page_router
from exchange.ui.rendering import render
from exchange.ui.sessions import OptionalSession
from nodes import ledger, peers
from nodes.audit import summary as audit_summary
from nodes.database import reading
from nodes.node import Node
from nodes.releases import store
from policies.accounts import BudgetLine, accounts_in_force
from policies.budget import epsilon
from schemas.errors import N_

router = page_router()


@dataclass(frozen=True)
class Budget:
    """One ledger account as the page shows it, in ε."""

    period: str
    spent: float
    cap: float

    @classmethod
    def of(cls, line: BudgetLine) -> Budget:
        return cls(line.charge.period, epsilon(line.spent_micro), epsilon(line.charge.cap_micro))


@dataclass(frozen=True)
class Flow:
    """What went out to one partner for one schema."""

    partner_id: str
    schema_id: str
    releases: int
    refusals: int
    budgets: tuple[Budget, ...]


@dataclass(frozen=True)
class Transparency:
    flows: tuple[Flow, ...]
    shared: tuple[tuple[str, Budget], ...]  # (schema, the global account all partners share)
    partner_names: dict[str, str]
    at: dt.datetime

    @property
    def releases(self) -> int:
        return sum(f.releases for f in self.flows)

    @property
    def refusals(self) -> int:
        return sum(f.refusals for f in self.flows)


def gather(node: Node, *, now: dt.datetime) -> Transparency:
    """Releases, refusals and budgets per (partner, schema), from the shared queries."""
    released: Counter[tuple[str, str]] = Counter()
    with reading(node.engine) as conn:
        for partner, schema, _agreement, n in store.counts(conn):
            released[(partner, schema)] += n
        lines = ledger.report(conn, accounts_in_force(node.policy, now))
    refused: Counter[tuple[str, str]] = Counter()
    for (partner, schema, _rule), n in audit_summary.release_refusals(node.engine).items():
        refused[(partner, schema)] += n  # the rule stays out: a red line can name data
    budgets: dict[tuple[str, str], list[Budget]] = {}
    shared: list[tuple[str, Budget]] = []
    for line in lines:
        if line.charge.scope == "global":
            shared.append((line.charge.schema_id, Budget.of(line)))
        else:
            key = (line.charge.partner_id, line.charge.schema_id)
            budgets.setdefault(key, []).append(Budget.of(line))
    keys = sorted(set(released) | set(refused) | set(budgets))
    flows = tuple(
        Flow(p, s, released[(p, s)], refused[(p, s)], tuple(budgets.get((p, s), ())))
        for p, s in keys
    )
    names = {peer.id: peer.name for peer in peers.list_peers(node.engine, include_removed=True)}
    return Transparency(flows, tuple(sorted(shared, key=lambda s: s[0])), names, now)


@router.get("/ui/transparency")
async def transparency(request: Request, node: NodeDep, _session: OptionalSession) -> Response:
    if not node.settings.public_transparency:  # the same page as any unknown address
        sentence = i18n.translated(N_("There is no page at this address."), request.state.language)
        return error_page(request, 404, "Not found", sentence)
    found = await run_in_threadpool(functools.partial(gather, node, now=dt.datetime.now(dt.UTC)))
    labels = {schema.id: schema.label.get(request.state.language) for schema in node.registry}
    return render(request, "transparency.html", {"found": found, "schema_labels": labels})
