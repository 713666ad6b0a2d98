"""The nodes of the federation benchmark: directories, policies, servers, peers and data.

Every node is a real ``exchange serve`` process on loopback (``tests.servers``), so each has
its own memory and CPU accounting in /proc. Each node's policy makes every other node a
partner for admin level 1 weekly cases with budgets far above what a run spends; each
registers every other node as a peer with its key and the URL its server got; each holds a
small synthetic outbreak (the demo's, the last few weeks of it) pushed through its agency
API like a ministry would.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
import subprocess
import tempfile
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx2

from exchange.demo.data import Nation, as_csv, outbreak_rows
from nodes import peers, tokens
from nodes.directory import init_node, sample_gazetteer
from nodes.identity import load_current, public_key_text
from nodes.node import Node
from nodes.settings import NodeSettings
from policies.query import ReleaseQuery
from schemas.periods import week_of
from tests.servers import kill_hard, start_server

SCHEMA = "weekly_epi@1"
WEEKS = 3  # 4 provinces x 3 districts x 3 weeks x 12 strata = 432 rows a node
PROVINCES = 4
LOG_LINES = 20
STARTING = 4  # servers started at once: their start-up is mostly imports, on 2 cores


def node_ids(count: int) -> list[str]:
    return [f"N{i:02d}" for i in range(1, count + 1)]


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def weeks(today: dt.date) -> list[str]:
    return [week_of(today - dt.timedelta(weeks=back), "iso") for back in range(WEEKS, 0, -1)]


def query(today: dt.date) -> ReleaseQuery:
    """Weekly cases per province: 4 x 3 = 12 cells, the same for every pull."""
    found = weeks(today)
    return ReleaseQuery(
        schema_id=SCHEMA,
        measures=("cases",),
        group_by=("area:adm1", "week"),
        since=found[0],
        until=found[-1],
        purpose="benchmark",
    )


CELLS = PROVINCES * WEEKS


def policy(node_id: str, partners: list[str]) -> str:
    """Like the demo's policy_yaml, for any number of partners, with room for every pull."""
    return f"""\
version: 1
node: {node_id}
schemas:
  {SCHEMA}:
    global_budget: {{epsilon: 10000, period: total}}
    weeks_per_person: 2
agreements:
  - id: {node_id.lower()}-mesh
    partners: [{", ".join(partners)}]
    schema: {SCHEMA}
    measures: [cases]
    dimensions:
      area: {{level: 1}}
      week: {{period: week}}
    embargo_days: 0
    purposes: [benchmark]
    valid_from: 2020-01-01
    valid_until: 2035-12-31
    privacy: {{mechanism: laplace, epsilon: 0.01}}
    budget: {{epsilon: 10000, period: total}}
"""


def outbreak(node_id: str, seed: int, today: dt.date) -> list[dict[str, object]]:
    """The demo's synthetic outbreak for this node, its last WEEKS weeks only."""
    nation = Nation(node_id, f"Republic of {node_id}", seed, close_partner="", far_partner="")
    kept = set(weeks(today))
    gazetteer = sample_gazetteer(node_id, provinces=PROVINCES)
    return [row for row in outbreak_rows(nation, gazetteer, today) if row["week"] in kept]


def _drain(process: subprocess.Popen[bytes], tail: deque[bytes]) -> None:
    try:
        for line in iter(process.stderr.readline, b"") if process.stderr else ():
            tail.append(line)
    except (OSError, ValueError):  # closed by kill_hard
        return


@dataclass
class Federation:
    """Node directories under one temporary directory, and their servers once started."""

    work: Path
    settings: dict[str, NodeSettings] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)  # agency tokens, to push
    servers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)
    opened: dict[str, Node] = field(default_factory=dict)  # the pulling side, in this process
    logs: dict[str, deque[bytes]] = field(default_factory=dict)  # the end of each server's stderr

    @classmethod
    def create(cls) -> Federation:
        return cls(Path(tempfile.mkdtemp(prefix="bench-federation-")))

    def build(self, count: int) -> None:
        """Directories, policies and agency tokens (no peers yet: their URLs come later)."""
        ids = node_ids(count)
        for node_id in ids:
            settings, _ = init_node(
                self.work / node_id,
                node_id=node_id,
                name=node_id,
                gazetteer=sample_gazetteer(node_id, provinces=PROVINCES),
            )
            others = [other for other in ids if other != node_id]
            settings.policy_file.write_text(policy(node_id, others), encoding="utf-8")
            node = Node.open(settings)
            try:
                _, self.secrets[node_id] = tokens.issue_token(
                    node.engine, name="ministry", role="agency", schemas=(SCHEMA,), now=now()
                )
            finally:
                node.close()
            self.settings[node_id] = settings

    def start(self) -> None:
        """Every server, a few at a time; each states the URL of the port it got."""

        def one(node_id: str) -> None:
            process, port = start_server(self.settings[node_id].directory, public_url=True)
            self.servers[node_id] = process  # before anything else can fail: stop() finds it
            self.urls[node_id] = f"http://127.0.0.1:{port}"
            # Nobody reads the server's stderr after start-up: once the pipe holds 64 kB of
            # log lines, the server blocks on its next write. Keep reading, keep the tail.
            tail = self.logs[node_id] = deque(maxlen=LOG_LINES)
            threading.Thread(target=_drain, args=(process, tail), daemon=True).start()

        with ThreadPoolExecutor(STARTING) as pool:
            try:
                for started in [pool.submit(one, node_id) for node_id in self.settings]:
                    started.result()
            except BaseException:
                pool.shutdown(cancel_futures=True)  # start no more; stop() ends the rest
                raise

    def connect(self) -> None:
        """Each node registers every other as a peer: its current key and its URL."""
        public = {
            node_id: public_key_text(load_current(settings.keys_dir).public_key)
            for node_id, settings in self.settings.items()
        }
        for node_id, settings in self.settings.items():
            node = self.opened[node_id] = Node.open(settings)
            for other in self.settings:
                if other != node_id:
                    peers.add_peer(
                        node.engine, peer_id=other, name=other, url=self.urls[other], now=now(),
                        keys=[peers.NewKey(public[other])],
                    )  # fmt: skip

    def push(self, http: httpx2.Client, node_id: str, rows: list[dict[str, object]]) -> None:
        headers = {"Authorization": f"Bearer {self.secrets[node_id]}", "Content-Type": "text/csv"}
        url = f"{self.urls[node_id]}/v1/reports/{SCHEMA}"
        answer = http.post(url, content=as_csv(rows), headers=headers)
        if answer.status_code != 201:
            raise RuntimeError(f"pushing to {node_id} failed ({answer.status_code}): {answer.text}")

    def seed(self, http: httpx2.Client) -> dict[str, list[dict[str, object]]]:
        """Push each node's outbreak; return it (its first row is re-pushed as a correction)."""
        today = now().date()
        pushed = {}
        for seed, node_id in enumerate(self.settings, start=1):
            pushed[node_id] = outbreak(node_id, seed, today)
            self.push(http, node_id, pushed[node_id])
        return pushed

    def log_tails(self) -> str:
        """The last lines each server wrote to stderr, to explain a failed run."""
        return "".join(
            f"--- {node_id}\n{b''.join(tail).decode(errors='replace')}"
            for node_id, tail in self.logs.items()
            if tail
        )

    def stop(self) -> None:
        """Kill every server and remove every directory, whatever happened before."""
        for node in self.opened.values():
            node.close()
        self.opened.clear()
        for process in self.servers.values():
            with contextlib.suppress(ProcessLookupError, subprocess.TimeoutExpired):
                kill_hard(process)
        self.servers.clear()
        shutil.rmtree(self.work, ignore_errors=True)
