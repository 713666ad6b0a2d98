"""Building small federations in one process: nodes, policies, data, peers, clients.

Each member is a real node (its own directory and database) served by its own app; a
member's peer client reaches another member's app through Starlette's ``TestClient``,
which is an ``httpx2.Client`` with an in-process transport: no sockets.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from exchange.api.app import create_app
from exchange.clients.peer import PeerClient
from exchange.clients.pulling import peer_client
from exchange.demo.data import NATIONS, Nation, as_csv, outbreak_rows, outbreak_weeks, policy_yaml
from nodes import ledger, peers, tokens
from nodes.database import reading
from nodes.directory import init_node, sample_gazetteer
from nodes.federation_tables import nonces, received_releases
from nodes.identity import load_current, public_key_text
from nodes.node import Node
from nodes.releases.tables import releases
from nodes.settings import NodeSettings
from policies.query import ReleaseQuery

SCHEMA = "weekly_epi@1"
BY_NATION = {n.id: n for n in NATIONS}


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def weeks() -> list[str]:
    return outbreak_weeks(now().date())


def query(*group_by: str, measures: tuple[str, ...] = ("cases",), **extra: Any) -> ReleaseQuery:
    """A query over the demo outbreak's weeks."""
    found = weeks()
    return ReleaseQuery(
        schema_id=SCHEMA,
        measures=measures,
        group_by=group_by or ("area:adm0", "week"),
        since=found[0],
        until=found[-1],
        purpose="outbreak_response",
        **extra,
    )


@dataclass
class Member:
    nation: Nation
    settings: NodeSettings
    node: Node
    app: FastAPI
    http: TestClient  # reaches this member's app in-process
    agency_token: str = ""
    clients: dict[str, PeerClient] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.nation.id

    @property
    def url(self) -> str:
        return self.settings.public_url

    def client_to(self, other: Member, **options: Any) -> PeerClient:
        peer = peers.get_peer(self.node.engine, other.id)
        return peer_client(self.node, other.http, peer, **options)

    def counts(self) -> dict[str, int]:
        """What a rejected request must not have changed."""
        with reading(self.node.engine) as conn:
            spent = sum(line.spent_micro for line in ledger.all_lines(conn))
            return {
                "spent_micro": spent,
                "releases": conn.execute(select(func.count()).select_from(releases)).scalar_one(),
                "nonces": conn.execute(select(func.count()).select_from(nonces)).scalar_one(),
                "received": conn.execute(
                    select(func.count()).select_from(received_releases)
                ).scalar_one(),
            }


def make_member(stack: ExitStack, directory: Path, nation: Nation, database_url: str) -> Member:
    settings, _key = init_node(
        directory / nation.id,
        node_id=nation.id,
        name=nation.name,
        public_url=f"http://{nation.id.lower()}.test",
        database_url=database_url,
        gazetteer=sample_gazetteer(nation.id),
    )
    settings.policy_file.write_text(policy_yaml(nation), encoding="utf-8")
    node = Node.open(settings)
    stack.callback(node.close)
    app = create_app(settings, node=node)
    http = stack.enter_context(TestClient(app, base_url=settings.public_url))
    _record, secret = tokens.issue_token(
        node.engine, name="moh", role="agency", schemas=(SCHEMA,), now=now()
    )
    return Member(nation, settings, node, app, http, agency_token=secret)


def register(member: Member, other: Member) -> None:
    public = load_current(other.settings.keys_dir).public_key
    peers.add_peer(
        member.node.engine,
        peer_id=other.id,
        name=other.nation.name,
        url=other.url,
        keys=[peers.NewKey(public_key_text(public))],
        now=now(),
    )


def seed(member: Member) -> None:
    rows = outbreak_rows(member.nation, member.node.gazetteer, now().date())
    answer = member.http.post(
        f"/v1/reports/{SCHEMA}",
        content=as_csv(rows),
        headers={"Authorization": f"Bearer {member.agency_token}", "Content-Type": "text/csv"},
    )
    assert answer.status_code == 201, answer.text


def federation(
    stack: ExitStack, directory: Path, urls: Iterator[str], ids: tuple[str, ...]
) -> dict[str, Member]:
    """Members for ``ids``, each with data, each knowing all the others."""
    members = {i: make_member(stack, directory, BY_NATION[i], next(urls)) for i in ids}
    for member in members.values():
        seed(member)
        for other in members.values():
            if other is not member:
                register(member, other)
    return members
