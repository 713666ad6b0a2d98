"""The running exercise as the shocks see it: the members, one HTTP client, fresh queries,
and a pull that reports how it ended instead of raising.

Pulls go through the product's own pulling path (`exchange.clients.pulling.pull`: signed
with the puller's key, verified against the keys it pins, stored, the provider's checkpoint
witnessed), from the puller's database opened in this process as ``exchange pull`` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import httpx2

from exchange.clients.peer import (
    PeerError,
    PeerRefusedError,
    PeerSignatureError,
    PeerUnreachableError,
)
from exchange.clients.pulling import PullResult, peer_client, pull
from exchange.exercises.databases import Databases
from exchange.exercises.federation import PURPOSE, SCHEMA, ExerciseNode
from exchange.exercises.scenario import Scenario
from nodes import peers
from policies.query import ReleaseQuery

Ending = Literal["served", "refused", "unreachable", "unverified", "failed"]


@dataclass(frozen=True)
class Outcome:
    """How one pull ended: ``ending``, the HTTP status and rule of a refusal, the release."""

    puller: str
    provider: str
    ending: Ending
    status: int | None = None
    rule: str = ""
    detail: str = ""
    problem: dict[str, Any] = field(default_factory=dict)
    result: PullResult | None = None

    @property
    def decision(self) -> str:
        """What the seed decides: the ending, and the status and rule of a refusal."""
        if self.ending == "refused":
            return f"{self.puller}<-{self.provider}: refused {self.status} {self.rule}".rstrip()
        return f"{self.puller}<-{self.provider}: {self.ending}"

    def summary(self) -> str:
        if self.result is not None:
            release = self.result.release
            return (
                f"{self.puller} got release {release['release_id']} from {self.provider} "
                f"({len(release['cells'])} cells, ε {release['epsilon_spent']:g})"
            )
        return (
            f"{self.puller} from {self.provider}: {self.ending} {self.status or ''} {self.detail}"
        )


@dataclass
class Exercise:
    scenario: Scenario
    members: dict[str, ExerciseNode]
    http: httpx2.Client
    weeks: list[str]
    #: Each node's outbreak as its agency pushed it.
    rows: dict[str, list[dict[str, object]]] = field(default_factory=dict)
    #: Where the nodes keep their data (SQLite files, or a PostgreSQL schema each).
    databases: Databases = field(default_factory=Databases)
    #: (provider, partner) pairs no longer expected to serve, and why (sunset, budget).
    closed: dict[tuple[str, str], str] = field(default_factory=dict)
    _asked: dict[tuple[str, str], int] = field(default_factory=dict)

    def __getitem__(self, node_id: str) -> ExerciseNode:
        return self.members[node_id]

    def online(self) -> list[ExerciseNode]:
        return [m for m in self.members.values() if m.server.running]

    def fresh(
        self, provider: str, partner: str, *, group_by: tuple[str, ...] = ("area:adm1", "week")
    ) -> ReleaseQuery:
        """A query this partner has not asked this provider yet (another week range), so
        the release is new and charged; always starting at the outbreak's first week."""
        count = self._asked.get((provider, partner), 0)
        self._asked[(provider, partner)] = count + 1
        last = len(self.weeks) - 1 - count % len(self.weeks)
        measures = ("cases",) if (count // len(self.weeks)) % 2 == 0 else ("admissions",)
        return ReleaseQuery(
            schema_id=SCHEMA,
            measures=measures,
            group_by=group_by,
            since=self.weeks[0],
            until=self.weeks[max(last, 0)],
            purpose=PURPOSE,
        )

    def pull(
        self, puller: str, provider: str, query: ReleaseQuery, *, attempts: int = 3
    ) -> Outcome:
        """``puller`` asks ``provider``; every way it can end is an Outcome, never raised."""
        node = self.members[puller].node
        client = peer_client(
            node,
            self.http,
            peers.get_peer(node.engine, provider),
            timeout=httpx2.Timeout(15.0, connect=2.0),
            attempts=attempts,
            retry_timeout=6.0,
        )
        try:
            result = pull(node, client, query)
        except PeerRefusedError as refused:
            problem = refused.problem
            rule = str(problem.get("rule") or problem.get("signature_error") or "")
            if refused.status == 429:
                rule = rule or "budget"
            return Outcome(puller, provider, "refused", refused.status, rule, refused.what, problem)
        except PeerUnreachableError as down:
            return Outcome(puller, provider, "unreachable", detail=down.what)
        except PeerSignatureError as bad:
            return Outcome(puller, provider, "unverified", detail=bad.what)
        except PeerError as other:
            return Outcome(puller, provider, "failed", detail=other.what)
        return Outcome(puller, provider, "served", 200, result=result)
