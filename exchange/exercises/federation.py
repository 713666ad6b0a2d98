"""The exercise's federation: N node directories, each a partner and a peer of every other,
each served by its own real server process.

Each node has an agency token (its ministry pushes), two operator tokens (the two-person
rule of escalations) and a policy with one agreement per partner: weekly cases and
admissions by province, an emergency escalation to districts allowed in advance, deaths a
red line. The runner acts as every node's operators and agencies through the product's own
paths: the HTTP API, or the functions behind the CLI commands (which open the node's
database beside its running server, as ``exchange pull`` does).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from exchange.exercises.databases import Databases
from exchange.exercises.outbreak import Wave
from exchange.exercises.scenario import Scenario
from exchange.exercises.servers import PortTakenError, Server, free_port
from nodes import peers, tokens
from nodes.directory import init_node, sample_gazetteer
from nodes.identity import load_current, public_key_text
from nodes.node import Node
from nodes.settings import SETTINGS_FILE, NodeSettings

SCHEMA = "weekly_epi@1"
PURPOSE = "outbreak_response"
PORT_ATTEMPTS = 5
OPERATORS = ("operator-alice", "operator-bob")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def agreement_id(provider: str, partner: str) -> str:
    return f"{provider.lower()}-{partner.lower()}"


def policy_yaml(
    node_id: str,
    partners: Iterable[str],
    *,
    budget: float,
    ended: Iterable[str] = (),
    today: dt.date | None = None,
) -> str:
    """The node's policy: one agreement per partner. Partners in ``ended`` have an agreement
    whose ``valid_until`` is yesterday: the state of the node after midnight of its sunset."""
    today = today or _now().date()
    ended = set(ended)
    partners = sorted(partners)
    lines = [
        f"# Policy of exercise node {node_id} (made by 'exchange exercise').",
        "version: 1",
        f"node: {node_id}",
        "red_lines:",
        "  - id: no-deaths",
        "    reason: Deaths are published only in the Ministry of Health's own bulletin.",
        "    measures: [deaths]",
        "schemas:",
        f"  {SCHEMA}:",
        f"    global_budget: {{epsilon: {budget * max(1, len(partners)) + 1:g}, period: total}}",
        "    weeks_per_person: 2",
        "agreements:",
    ]
    for partner in partners:
        until = today - dt.timedelta(days=1) if partner in ended else dt.date(2030, 12, 31)
        lines += [
            f"  - id: {agreement_id(node_id, partner)}",
            f"    partners: [{partner}]",
            f"    schema: {SCHEMA}",
            "    measures: [cases, admissions]",
            "    dimensions:",
            "      area: {level: 1}",
            "      week: {period: week}",
            "    embargo_days: 0",
            f"    purposes: [{PURPOSE}]",
            "    valid_from: 2025-01-01",
            f"    valid_until: {until.isoformat()}",
            "    privacy: {mechanism: laplace, epsilon: 1.0}",
            f"    budget: {{epsilon: {budget:g}, period: total}}",
            "    escalation:",
            "      max_hours: 72",
            "      dimensions:",
            "        area: {level: 2}",
        ]
    return "\n".join(lines) + "\n"


@dataclass
class ExerciseNode:
    """One member: its directory, server, tokens, and its database opened by the runner."""

    id: str
    settings: NodeSettings
    server: Server
    wave: Wave
    tokens: dict[str, str] = field(default_factory=dict)  # name -> secret (never logged)
    _node: Node | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def directory(self) -> Path:
        return self.settings.directory

    @property
    def node(self) -> Node:
        """The node's database and keys, opened in this process like a CLI command would."""
        if self._node is None:
            self._node = Node.open(NodeSettings.load(self.directory))
        return self._node

    def close(self) -> None:
        if self._node is not None:
            self._node.close()
            self._node = None

    def bearer(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}


def _set_url(settings: NodeSettings, url: str) -> NodeSettings:
    path = settings.directory / SETTINGS_FILE
    text = re.sub(r'(?m)^public_url = ".*"$', f'public_url = "{url}"', path.read_text())
    path.write_text(text, encoding="utf-8")
    return NodeSettings.load(settings.directory)


def build(
    directory: Path, scenario: Scenario, waves: dict[str, Wave], databases: Databases | None = None
) -> list[ExerciseNode]:
    """Make every node's directory (settings, keys, gazetteer, policy, tokens), its database
    migrated in its directory or in the schema ``databases`` made for it."""
    databases = databases or Databases()
    made: list[ExerciseNode] = []
    for node_id in scenario.node_ids:
        port = free_port()
        settings, _key = init_node(
            directory / node_id,
            node_id=node_id,
            name=f"Exercise nation {node_id}",
            public_url=f"http://127.0.0.1:{port}",
            database_url=databases.node_url(node_id),
            gazetteer=sample_gazetteer(node_id),
        )
        others = [n for n in scenario.node_ids if n != node_id]
        settings.policy_file.write_text(
            policy_yaml(node_id, others, budget=scenario.budget_epsilon), encoding="utf-8"
        )
        with (settings.directory / SETTINGS_FILE).open("a", encoding="utf-8") as toml:
            toml.write(f"checkpoint_interval_seconds = {scenario.checkpoint_interval_seconds}\n")
        settings = NodeSettings.load(settings.directory)
        made.append(
            ExerciseNode(node_id, settings, Server(settings.directory, port), waves[node_id])
        )
    return made


def start(member: ExerciseNode) -> None:
    """Start a node's server for the first time; a port taken meanwhile is replaced (its
    peers are registered only after every node has its port)."""
    for _attempt in range(PORT_ATTEMPTS):
        try:
            member.server.start()
            return
        except PortTakenError:
            member.server.port = free_port()
            member.settings = _set_url(member.settings, member.server.url)
    raise PortTakenError(f"no free port for node {member.id} in {PORT_ATTEMPTS} attempts")


def introduce(members: list[ExerciseNode]) -> None:
    """Each node registers every other as a peer (keys read from their files, as an operator
    reads them out over the phone) and issues its own tokens."""
    for member in members:
        engine = member.node.engine
        for other in members:
            if other is member:
                continue
            public = load_current(other.settings.keys_dir).public_key
            peers.add_peer(
                engine,
                peer_id=other.id,
                name=f"Exercise nation {other.id}",
                url=other.url,
                keys=[peers.NewKey(public_key_text(public))],
                now=_now(),
            )
        _record, member.tokens["agency"] = tokens.issue_token(
            engine, name="ministry-of-health", role="agency", schemas=(SCHEMA,), now=_now()
        )
        for name in OPERATORS:
            _record, member.tokens[name] = tokens.issue_token(
                engine, name=name, role="operator", schemas=(), now=_now()
            )
