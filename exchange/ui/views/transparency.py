"""The public transparency page: the node's transparency review of a period, as a page.

No sign-in: anyone may read it once the operator turns it on (``public_transparency``);
until then it answers the same 404 page as an address that does not exist, so it reveals
nothing, not even that it could be turned on; a period that is not one answers that page
too. The figures are the signed review's (`nodes.reviews.transparency.compute`) for the
node's latest checkpoint, so the page, ``exchange report transparency`` and an auditor's
recomputation from an export agree: counts, refusal rules, ε and escalation times, never a
cell, a value, a query or a reason.

The review is a fold over the log (`nodes.reviews.transparency.Tally`): each worker keeps the
tally of each period shown and folds in only the entries signed since, so the public reading
the page does not make the node read its log again.
"""

from __future__ import annotations

import datetime as dt
import functools
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from exchange import i18n
from exchange.api.dependencies import NodeDep
from exchange.ui.pages import error_page, page_router
from exchange.ui.rendering import render
from exchange.ui.sessions import OptionalSession
from nodes import peers
from nodes.node import Node
from nodes.reviews import transparency as reviews
from policies.accounts import accounts_in_force
from policies.budget import epsilon
from schemas.errors import N_

router = page_router()
#: Quarters offered in the period menu, the current one first.
QUARTERS_OFFERED = 8
_CACHE_SIZE = 32
_tallies: OrderedDict[tuple[str, str, str], reviews.Tally] = OrderedDict()
_lock = threading.Lock()


@dataclass(frozen=True)
class Budget:
    """One ledger account as the page shows it, in ε."""

    period: str
    spent: float
    cap: float

    @classmethod
    def of(cls, account: dict[str, Any]) -> Budget:
        return cls(
            account["period"], epsilon(account["spent_micro"]), epsilon(account["cap_micro"])
        )


@dataclass(frozen=True)
class Flow:
    """What went out to one partner for one schema in the period, beside its budgets."""

    partner_id: str
    schema_id: str
    releases: int
    replayed: int
    refusals: tuple[tuple[str, int], ...]  # (rule, count)
    spent: float
    budgets: tuple[Budget, ...]

    @property
    def refused(self) -> int:
        return sum(n for _rule, n in self.refusals)


@dataclass(frozen=True)
class Page:
    review: dict[str, Any]
    flows: tuple[Flow, ...]
    shared: tuple[tuple[str, Budget], ...]  # (schema, the global account all partners share)
    partner_names: dict[str, str]

    @property
    def releases(self) -> int:
        return sum(f.releases for f in self.flows)

    @property
    def refusals(self) -> int:
        return sum(f.refused for f in self.flows)

    @property
    def checkpoint_time(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.review["checkpoint"]["time"])

    @property
    def approved(self) -> list[tuple[int, str, dt.datetime, dt.datetime | None]]:
        """Each approved escalation: id, schema, start, end (None: not stated)."""
        return [
            (
                e["id"],
                e["schema"],
                dt.datetime.fromisoformat(e["start"]),
                None if e["end"] is None else dt.datetime.fromisoformat(e["end"]),
            )
            for e in self.review["approved_escalations"]
        ]


def review_for(node: Node, period: reviews.Period) -> dict[str, Any] | None:
    """The review of ``period`` at the node's latest checkpoint (None before the first).

    Each worker keeps a tally per period and folds in only the entries signed since it last
    looked, so a new checkpoint costs what was appended, not the whole log. A log only grows
    while the node runs (a restore happens offline, and the restarted worker starts afresh);
    a tally ahead of the checkpoint is thrown away all the same.
    """
    head = reviews.latest_head(node)
    if head is None:
        return None
    key = (node.settings.node_id, str(node.engine.url), period.name)  # one per database
    with _lock:
        tally = _tallies.get(key)
        if tally is None or tally.size > head.tree_size:
            tally = reviews.Tally(period)
        for entry in reviews.node_entries(node, head, since=tally.size):
            tally.add(entry)
        tally.size = head.tree_size
        _tallies[key] = tally
        _tallies.move_to_end(key)
        while len(_tallies) > _CACHE_SIZE:
            _tallies.popitem(last=False)
        policy = node.policy
        return tally.review(
            node_id=node.settings.node_id,
            checkpoint=head,
            charges=accounts_in_force(policy, reviews.budgets_as_of(period, head)),
            policy_hash=policy.hash,
        )


def lined_up(node: Node, review: dict[str, Any]) -> Page:
    """The review's flows beside each partner's budgets, and the shared budgets apart."""
    budgets: dict[tuple[str, str], list[Budget]] = {}
    shared: list[tuple[str, Budget]] = []
    for account in review["budgets"]:
        if account["scope"] == "global":
            shared.append((account["schema"], Budget.of(account)))
        else:
            key = (account["partner"], account["schema"])
            budgets.setdefault(key, []).append(Budget.of(account))
    flows = {(f["partner"], f["schema"]): f for f in review["flows"]}
    keys = sorted(set(flows) | set(budgets))
    empty = {"releases": 0, "replayed": 0, "refusals": {}, "epsilon_spent_micro": 0}
    lined = tuple(
        Flow(
            partner_id=p,
            schema_id=s,
            releases=flows.get((p, s), empty)["releases"],
            replayed=flows.get((p, s), empty)["replayed"],
            refusals=tuple(sorted(flows.get((p, s), empty)["refusals"].items())),
            spent=epsilon(flows.get((p, s), empty)["epsilon_spent_micro"]),
            budgets=tuple(budgets.get((p, s), ())),
        )
        for p, s in keys
    )
    names = {peer.id: peer.name for peer in peers.list_peers(node.engine, include_removed=True)}
    return Page(review, lined, tuple(sorted(shared, key=lambda s: s[0])), names)


def _gather(node: Node, period: reviews.Period) -> Page | None:
    review = review_for(node, period)
    return None if review is None else lined_up(node, review)


def _not_found(request: Request) -> Response:
    sentence = i18n.translated(N_("There is no page at this address."), request.state.language)
    return error_page(request, 404, "Not found", sentence)


@router.get("/ui/transparency")
async def transparency(
    request: Request, node: NodeDep, _session: OptionalSession, period: str | None = None
) -> Response:
    if not node.settings.public_transparency:  # the same page as any unknown address
        return _not_found(request)
    current = reviews.Period.quarter_of(dt.datetime.now(dt.UTC))
    try:
        chosen = current if period is None else reviews.Period.parse(period)
    except reviews.PeriodError:
        return _not_found(request)
    if chosen.start >= current.end:  # a period not begun yet holds nothing to show
        return _not_found(request)
    found = await run_in_threadpool(functools.partial(_gather, node, chosen))
    offered = [current]
    while len(offered) < QUARTERS_OFFERED:
        offered.append(offered[-1].before())
    labels = {schema.id: schema.label.get(request.state.language) for schema in node.registry}
    return render(
        request,
        "transparency.html",
        {
            "found": found,
            "period": chosen,
            "last_day": chosen.end - dt.timedelta(days=1),
            "offered": [p.name for p in offered],
            "schema_labels": labels,
        },
    )
