"""Standing subscriptions on the provider: policy at creation, periods made and charged
once (also under concurrent workers), forecast, sunset, budget, cancel, audit; both backends."""

from __future__ import annotations

import datetime as dt
import json
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import pytest
from sqlalchemy import select

from nodes import subscriptions
from nodes.audit.tables import audit_entries
from nodes.ledger import InsufficientBudgetError
from nodes.node import Node
from nodes.releases import pipeline
from policies.query import ReleaseQuery
from schemas.errors import ConflictError, InvalidInputError, NotFoundError
from tests.release_support import (
    NOW,
    agency,
    edited_policy,
    install_policy,
    ledger_spent,
    push,
    weekly,
)

QUERY = ReleaseQuery(
    schema_id="weekly_epi@1",
    measures=("cases",),
    group_by=("area", "week"),
    since="2026-W01",
    purpose="outbreak_response",
)


def seeded(node: Node, policy: str | None = None) -> None:
    install_policy(node, policy)
    push(node, agency(node), "weekly_epi@1", weekly(("XA-P1-D1", "XA-P2-D1"), range(1, 5)))


def actions(node: Node) -> list[tuple[str, str]]:
    with node.engine.connect() as conn:
        rows = conn.execute(select(audit_entries.c.entry).order_by(audit_entries.c.seq)).all()
    entries = [json.loads(bytes(r.entry)) for r in rows]
    return [(e["action"], e["outcome"]) for e in entries if e["action"].startswith("subscription")]


def test_a_subscription_the_policy_denies_is_refused_and_nothing_stored(node: Node) -> None:
    seeded(node)
    asked = QUERY.model_copy(update={"purpose": "marketing"})
    with pytest.raises(pipeline.PolicyDeniedError) as refused:
        subscriptions.create(node, partner_id="XB", query=asked, cadence="week", now=NOW)
    assert refused.value.decision.reasons
    assert subscriptions.listing(node, partner_id=None, now=NOW) == []
    assert actions(node) == [("subscription.add", "denied")]


def test_malformed_subscriptions_are_refused(node: Node) -> None:
    seeded(node)
    with pytest.raises(InvalidInputError):
        subscriptions.create(node, partner_id="XB", query=QUERY, cadence="daily", now=NOW)
    with pytest.raises(InvalidInputError):
        bounded = QUERY.model_copy(update={"until": "2026-W05"})
        subscriptions.create(node, partner_id="XB", query=bounded, cadence="week", now=NOW)


def test_periods_are_due_only_once_the_embargo_lets_them_out(node: Node) -> None:
    seeded(node)
    made = subscriptions.create(node, partner_id="XB", query=QUERY, cadence="week", now=NOW)
    # 14 days of embargo on 2026-03-16: nothing after 2026-W09 leaves
    assert made.due == tuple(f"2026-W{w:02d}" for w in range(1, 10))
    sub_id = made.subscription.id
    with pytest.raises(NotFoundError):
        subscriptions.deliver(
            node, partner_id="XB", subscription_id=sub_id, period="2026-W10", now=NOW
        )
    later = NOW + dt.timedelta(days=7)
    release = subscriptions.deliver(
        node, partner_id="XB", subscription_id=sub_id, period="2026-W10", now=later
    )
    assert release.stored.query.since == release.stored.query.until == "2026-W10"


def test_a_period_is_made_once_and_charged_once(node: Node) -> None:
    seeded(node)
    sub_id = subscriptions.create(
        node, partner_id="XB", query=QUERY, cadence="week", now=NOW
    ).subscription.id
    first = subscriptions.deliver(
        node, partner_id="XB", subscription_id=sub_id, period="2026-W02", now=NOW
    )
    again = subscriptions.deliver(
        node, partner_id="XB", subscription_id=sub_id, period="2026-W02", now=NOW
    )
    assert again.id == first.id and again.cached and again.charged_micro == 0
    assert again.as_document()["cells"] == first.as_document()["cells"]
    assert ledger_spent(node)[("XB", "weekly_epi@1")] == 500_000
    view = subscriptions.listing(node, partner_id="XB", now=NOW)[0]
    assert view.made == ("2026-W02",) and view.spent_micro == 500_000
    assert actions(node) == [
        ("subscription.add", "allowed"),
        ("subscription.fetch", "allowed"),
        ("subscription.fetch", "replayed"),
    ]


def test_concurrent_workers_make_each_period_once(node: Node) -> None:
    seeded(node)
    sub_id = subscriptions.create(
        node, partner_id="XB", query=QUERY, cadence="month", now=NOW
    ).subscription.id
    workers = 8
    start = Barrier(workers)

    def fetch(i: int) -> int:
        start.wait()
        period = ("2026-01", "2026-02")[i % 2]
        return subscriptions.deliver(
            node, partner_id="XB", subscription_id=sub_id, period=period, now=NOW
        ).id

    with ThreadPoolExecutor(max_workers=workers) as pool:
        made = list(pool.map(fetch, range(workers)))
    assert len(set(made)) == 2  # one release per period, shared by every asker
    assert ledger_spent(node)[("XB", "weekly_epi@1")] == 2 * 500_000
    assert [a for a in actions(node) if a == ("subscription.fetch", "allowed")] == [
        ("subscription.fetch", "allowed")
    ] * 2


def test_the_forecast_counts_down_then_the_budget_ends_it(node: Node) -> None:
    seeded(
        node,
        edited_policy(
            ("budget: {epsilon: 10, period: year}", "budget: {epsilon: 1.5, period: year}")
        ),
    )
    made = subscriptions.create(node, partner_id="XB", query=QUERY, cadence="week", now=NOW)
    sub_id = made.subscription.id
    assert made.forecast is not None and made.forecast.releases_left == 3
    for left, week in ((2, 1), (1, 2), (0, 3)):
        subscriptions.deliver(
            node, partner_id="XB", subscription_id=sub_id, period=f"2026-W{week:02d}", now=NOW
        )
        view = subscriptions.listing(node, partner_id="XB", now=NOW)[0]
        assert view.forecast is not None and view.forecast.releases_left == left
    with pytest.raises(InsufficientBudgetError):
        subscriptions.deliver(
            node, partner_id="XB", subscription_id=sub_id, period="2026-W04", now=NOW
        )
    ended = subscriptions.get(node, sub_id, partner_id="XB")
    assert ended.ended_by == "budget" and "cannot pay" in (ended.end_reason or "")
    assert ledger_spent(node)[("XB", "weekly_epi@1")] == 1_500_000
    with pytest.raises(ConflictError):
        subscriptions.deliver(
            node, partner_id="XB", subscription_id=sub_id, period="2026-W05", now=NOW
        )
    # what was made before the end can still be fetched
    assert subscriptions.deliver(
        node, partner_id="XB", subscription_id=sub_id, period="2026-W01", now=NOW
    ).cached
    assert ("subscription.end", "allowed") in actions(node)


def test_a_subscription_ends_at_its_agreements_sunset(node: Node) -> None:
    seeded(node)
    subscriptions.create(node, partner_id="XB", query=QUERY, cadence="week", now=NOW)
    after = dt.datetime(2027, 1, 5, tzinfo=dt.UTC)
    view = subscriptions.listing(node, partner_id="XB", now=after)[0]
    assert not view.subscription.active
    assert view.subscription.ended_by == "sunset"
    assert "sunset" in (view.subscription.end_reason or "")
    assert ("subscription.end", "allowed") in actions(node)


def test_either_side_cancels_and_nobody_else_sees_it(node: Node) -> None:
    seeded(node)
    one = subscriptions.create(
        node, partner_id="XB", query=QUERY, cadence="week", now=NOW
    ).subscription.id
    two = subscriptions.create(
        node, partner_id="XB", query=QUERY, cadence="month", now=NOW
    ).subscription.id
    assert subscriptions.listing(node, partner_id="XC", now=NOW) == []
    with pytest.raises(NotFoundError):
        subscriptions.cancel(node, one, partner_id="XC", actor="partner:XC", now=NOW)
    with pytest.raises(NotFoundError):
        subscriptions.deliver(
            node, partner_id="XC", subscription_id=one, period="2026-W01", now=NOW
        )
    assert (
        subscriptions.cancel(node, one, partner_id="XB", actor="partner:XB", now=NOW).ended_by
        == "partner"
    )
    assert (
        subscriptions.cancel(node, two, partner_id=None, actor="operator", now=NOW).ended_by
        == "operator"
    )
    assert [
        v.subscription.active for v in subscriptions.listing(node, partner_id=None, now=NOW)
    ] == [False, False]
    assert actions(node).count(("subscription.cancel", "allowed")) == 2
