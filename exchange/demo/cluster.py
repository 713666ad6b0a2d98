"""Three demo nodes on one machine: directories, peers, tokens, servers, and their data.

``prepare`` writes the node directories (settings, keys, gazetteer, policy, peers that
know each other's keys, an agency token each). ``Cluster`` serves them with real uvicorn
servers on loopback ports, in threads of this process, and pushes each nation's outbreak
through its agency API like any ministry would. ``seed_in_process`` does the same push
through the ASGI app without sockets, for ``docker compose`` set-up before servers start.
"""

from __future__ import annotations

import datetime as dt
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
import uvicorn
from starlette.testclient import TestClient

from exchange.api.app import create_app
from exchange.clients.push import push_file
from exchange.demo.data import NATIONS, Nation, as_csv, outbreak_rows, policy_yaml
from nodes import peers, tokens
from nodes.access import Role
from nodes.directory import init_node, sample_gazetteer
from nodes.identity import load_current, public_key_text
from nodes.node import Node
from nodes.settings import SETTINGS_FILE, NodeSettings

SCHEMA = "weekly_epi@1"
TOKEN_FILE = "agency-token.txt"  # noqa: S105 (a file name, not a secret)
#: Who signs in to each demo node's dashboard: a token per role, named for the person.
DASHBOARD_PEOPLE: dict[Role, str] = {
    "agency": "ministry-of-health",
    "analyst": "partner-data-analyst",
    "auditor": "national-auditor",
    "operator": "node-operator",
}


@dataclass
class DemoNode:
    nation: Nation
    settings: NodeSettings
    #: A bearer token per role (agency, analyst, auditor, operator), to push or sign in.
    tokens: dict[Role, str] = field(default_factory=dict)
    node: Node | None = None
    server: uvicorn.Server | None = None
    thread: threading.Thread | None = None

    @property
    def id(self) -> str:
        return self.nation.id

    @property
    def agency_token(self) -> str:
        return self.tokens["agency"]

    @property
    def url(self) -> str:
        return self.settings.public_url

    @property
    def opened(self) -> Node:
        if self.node is None:
            self.node = Node.open(self.settings)
        return self.node


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def prepare(directory: Path, urls: dict[str, str]) -> list[DemoNode]:
    """Create the three node directories; each registers the other two as peers."""
    made: list[DemoNode] = []
    for nation in NATIONS:
        settings, _key = init_node(
            directory / nation.id,
            node_id=nation.id,
            name=nation.name,
            public_url=urls[nation.id],
            gazetteer=sample_gazetteer(nation.id),
        )
        settings.policy_file.write_text(policy_yaml(nation), encoding="utf-8")
        with (settings.directory / SETTINGS_FILE).open("a", encoding="utf-8") as toml:
            toml.write("public_transparency = true\n")  # the demo shows its transparency page
        made.append(DemoNode(nation, NodeSettings.load(settings.directory)))
    for demo in made:
        node = demo.opened
        for other in made:
            if other is demo:
                continue
            # In real life the key is read out over the phone; here we read the other's file.
            public = load_current(other.settings.keys_dir).public_key
            peers.add_peer(
                node.engine,
                peer_id=other.id,
                name=other.nation.name,
                url=other.url,
                keys=[peers.NewKey(public_key_text(public))],
                now=_now(),
            )
        for role, person in DASHBOARD_PEOPLE.items():
            schemas = (SCHEMA,) if role == "agency" else ()
            _record, demo.tokens[role] = tokens.issue_token(
                node.engine, name=person, role=role, schemas=schemas, now=_now()
            )
        token_file = demo.settings.directory / TOKEN_FILE
        token_file.write_text(demo.agency_token + "\n")
        token_file.chmod(0o600)
    return made


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _outbreak_file(demo: DemoNode) -> Path:
    path = demo.settings.directory / "outbreak.csv"
    gazetteer = demo.opened.gazetteer
    rows = outbreak_rows(demo.nation, gazetteer, _now().date())
    path.write_text(as_csv(rows), encoding="utf-8")
    return path


def push_outbreak(demo: DemoNode, http: httpx2.Client) -> int:
    """Push the nation's synthetic outbreak through the agency API; return the rows pushed."""
    result = push_file(http, token=demo.agency_token, schema_id=SCHEMA, path=_outbreak_file(demo))
    return result.rows


def seed_in_process(demo: DemoNode) -> int:
    """The same push, through the ASGI app in this process (no server needed)."""
    with TestClient(create_app(demo.settings, node=demo.opened), base_url=demo.url) as http:
        return push_outbreak(demo, http)


@dataclass
class Cluster:
    """Servers for the demo nodes, started and stopped together."""

    nodes: list[DemoNode]
    log_level: str = "warning"
    started: list[DemoNode] = field(default_factory=list)

    def start(self, timeout: float = 30.0) -> None:
        """Start the servers one after the other: each migrates its database on start-up,
        and Alembic's module-level state is not safe to share between threads."""
        for demo in self.nodes:
            port = int(demo.url.rsplit(":", 1)[1])
            config = uvicorn.Config(
                create_app(demo.settings),
                host="127.0.0.1",
                port=port,
                log_level=self.log_level,
                server_header=False,
                lifespan="on",
            )
            server = demo.server = uvicorn.Server(config)
            thread = demo.thread = threading.Thread(
                target=server.run, name=f"node-{demo.id}", daemon=True
            )
            thread.start()
            self.started.append(demo)
            deadline = time.monotonic() + timeout
            while not server.started:
                if time.monotonic() > deadline or not thread.is_alive():
                    raise RuntimeError(f"node {demo.id} did not start on {demo.url}")
                time.sleep(0.02)

    def stop(self) -> None:
        for demo in self.started:
            if demo.server is not None:
                demo.server.should_exit = True
        for demo in self.started:
            if demo.thread is not None:
                demo.thread.join(timeout=10)
        for demo in self.nodes:
            if demo.node is not None:
                demo.node.close()
                demo.node = None
        self.started.clear()


@contextmanager
def running(nodes: list[DemoNode]) -> Iterator[Cluster]:
    cluster = Cluster(nodes)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
