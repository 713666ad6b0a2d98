"""Subscriptions across two in-process nodes: signed subscribe, sync stores each due period
once (a second sync stores nothing), stored releases verify, cancel over the wire."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import stamina

from exchange.clients import subscriptions as subscribing
from exchange.clients.peer import PeerRefusedError
from exchange.clients.pulling import reverify
from nodes.releases import received
from tests.federation import Member, federation, now, query


@pytest.fixture(autouse=True)
def no_backoff() -> Iterator[None]:
    with stamina.set_testing(True, attempts=10, cap=True):
        yield


@pytest.fixture
def pair(stack: ExitStack, tmp_path: Path, database_urls: Iterator[str]) -> dict[str, Member]:
    return federation(stack, tmp_path, database_urls, ("XA", "XB"))


def test_sync_stores_each_due_period_once(pair: dict[str, Member]) -> None:
    xa, xb = pair["XA"], pair["XB"]
    client = xb.client_to(xa)
    asked = query().model_copy(update={"until": None})
    doc = subscribing.subscribe(xb.node, client, asked, "month", now=now())
    assert doc["active"] and doc["due"]
    assert "more releases" in doc["forecast"]["sentence"]
    first = subscribing.sync(xb.node, xa.http)
    assert not first.failed
    assert [p for _, _, p, _ in first.stored] == doc["due"]
    count = received.count(xb.node.engine)
    again = subscribing.sync(xb.node, xa.http)
    assert again.stored == [] and received.count(xb.node.engine) == count
    for _, _, _, received_id in first.stored:
        reverify(xb.node, received.get(xb.node.engine, received_id))  # raises if tampered
    ours = subscribing.ours(xb.node)
    assert ours[0]["stored"] == doc["due"]
    ended = subscribing.cancel(xb.node, client, int(doc["id"]), now=now())
    assert not ended["active"] and ended["ended_by"] == "partner"


def test_a_denied_subscription_is_refused_with_reasons(pair: dict[str, Member]) -> None:
    xa, xb = pair["XA"], pair["XB"]
    asked = query().model_copy(update={"until": None, "purpose": "marketing"})
    with pytest.raises(PeerRefusedError) as refused:
        subscribing.subscribe(xb.node, xb.client_to(xa), asked, "week", now=now())
    assert refused.value.status == 403 and refused.value.signed
    assert refused.value.problem.get("reasons")
    assert subscribing.ours(xb.node) == []
