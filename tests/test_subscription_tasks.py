"""The subscription sync inside ``exchange serve``: off by default, on when set, never fatal."""

from __future__ import annotations

import threading

import pytest
from fastapi.testclient import TestClient

from exchange.api import subscription_tasks
from exchange.api.app import create_app
from nodes.node import Node
from nodes.settings import NodeSettings


def test_it_is_off_unless_the_operator_sets_an_interval(
    settings: NodeSettings, node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert settings.subscription_sync_seconds == 0
    calls: list[Node] = []
    monkeypatch.setattr(subscription_tasks, "_sync_once", calls.append)
    with TestClient(create_app(settings, node=node)) as client:
        assert client.get("/healthz").status_code == 200
    assert subscription_tasks.start(node) == []
    assert calls == []


def test_it_syncs_every_interval_and_survives_a_failure(
    settings: NodeSettings, node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    node.settings = settings.model_copy(update={"subscription_sync_seconds": 1})
    rounds: list[int] = []
    second = threading.Event()

    def sync_once(_node: Node) -> None:
        rounds.append(len(rounds) + 1)
        if len(rounds) == 1:
            raise RuntimeError("peer unreachable")  # logged; the next round runs
        second.set()

    monkeypatch.setattr(subscription_tasks, "_sync_once", sync_once)
    with TestClient(create_app(node.settings, node=node)):
        assert second.wait(30), "the second round never ran"
    assert rounds[:2] == [1, 2]
