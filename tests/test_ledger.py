"""The budget ledger: both accounts or neither, and exact under concurrency on SQLite and
PostgreSQL, from threads and from separate worker processes."""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import func, select

from nodes import ledger
from nodes.database import reading, writing
from nodes.node import Node
from nodes.releases import pipeline
from nodes.releases.tables import releases as release_rows
from nodes.settings import NodeSettings
from policies.accounts import Charge
from policies.query import ReleaseQuery
from tests.release_support import (
    NOW,
    agency,
    edited_policy,
    install_policy,
    ledger_spent,
    push,
    release_audit,
    weekly,
)

K = 5  # the partner's budget pays for exactly five releases of 0.5 ε


def charges(partner_cap: int, global_cap: int) -> tuple[Charge, Charge]:
    return (
        Charge(
            scope="partner",
            partner_id="XB",
            schema_id="weekly_epi@1",
            period="total",
            cap_micro=partner_cap,
        ),
        Charge(
            scope="global",
            partner_id="*",
            schema_id="weekly_epi@1",
            period="total",
            cap_micro=global_cap,
        ),
    )


def test_both_accounts_are_charged_or_neither(node: Node) -> None:
    with writing(node.engine) as conn:
        after = ledger.reserve(conn, charges(1_000, 1_500), 600, NOW)
    assert [line.left_micro for line in after] == [400, 900]
    with pytest.raises(ledger.InsufficientBudgetError) as caught, writing(node.engine) as conn:
        ledger.reserve(conn, charges(10_000, 1_500), 1_000, NOW)  # the partner could, global cannot
    assert caught.value.line.charge.scope == "global"
    assert caught.value.line.left_micro == 900
    with reading(node.engine) as conn:
        assert [line.spent_micro for line in ledger.lines(conn, charges(0, 0))] == [600, 600]


def test_spending_exactly_the_cap_is_allowed_and_one_more_is_not(node: Node) -> None:
    with writing(node.engine) as conn:
        ledger.reserve(conn, charges(1_000, 1_000), 1_000, NOW)
    with pytest.raises(ledger.InsufficientBudgetError), writing(node.engine) as conn:
        ledger.reserve(conn, charges(1_000, 1_000), 1, NOW)


def budgeted(node: Node) -> None:
    install_policy(
        node,
        edited_policy(
            ("budget: {epsilon: 10, period: year}", f"budget: {{epsilon: {K * 0.5}, period: year}}")
        ),
    )
    push(node, agency(node), "weekly_epi@1", weekly(("XA-P1-D1",), range(1, 9), cases=20))


def query(i: int) -> ReleaseQuery:
    """Distinct queries (no cache hits), each costing 0.5 ε."""
    return ReleaseQuery(
        schema_id="weekly_epi@1",
        measures=("cases",),
        group_by=("area", "week"),
        since=f"2025-W{i + 1:02d}",
        until="2026-W09",
        purpose="outbreak_response",
    )


def attempt(node: Node, i: int, start: threading.Barrier | None = None) -> bool:
    if start is not None:
        start.wait()
    try:
        pipeline.release(node, partner_id="XB", query=query(i), now=NOW)
    except pipeline.InsufficientBudgetError:
        return False
    return True


def assert_exactly_k(node: Node, outcomes: list[bool]) -> None:
    assert sum(outcomes) == K, outcomes
    assert ledger_spent(node)[("XB", "weekly_epi@1")] == K * 500_000  # at its cap, not above
    with node.engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(release_rows)).scalar_one()
    assert count == K
    audited = [e["outcome"] for e in release_audit(node)]
    assert sorted(audited) == ["allowed"] * K + ["denied"] * (len(outcomes) - K)


def test_simultaneous_releases_from_many_threads_spend_exactly_the_budget(node: Node) -> None:
    budgeted(node)
    requests = 24
    start = threading.Barrier(requests)
    with ThreadPoolExecutor(max_workers=requests) as pool:
        outcomes = list(pool.map(lambda i: attempt(node, i, start), range(requests)))
    assert_exactly_k(node, outcomes)


def _worker(directory: str, first: int, count: int) -> list[bool]:
    node = Node.open(NodeSettings.load(Path(directory)))
    try:
        return [attempt(node, i) for i in range(first, first + count)]
    finally:
        node.close()


@pytest.mark.slow  # spawns worker processes
def test_several_worker_processes_spend_exactly_the_budget(
    node: Node, settings: NodeSettings
) -> None:
    budgeted(node)
    workers, each = 4, 4
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers) as pool:
        results = pool.starmap(
            _worker, [(str(settings.directory), w * each, each) for w in range(workers)]
        )
    assert_exactly_k(node, [ok for result in results for ok in result])
