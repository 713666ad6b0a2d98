"""A scenario (SCENARIO.yaml): how many nodes, the seed, and the timeline of shocks.

Shocks name the nodes they act on by id (``XA``, ``XB``...: the n-th node is ``X`` plus the
n-th letter), so a scenario reads like the exercise's briefing. Every model is frozen and
rejects unknown fields: a misspelt parameter is an error, never a silent default.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas.errors import ExchangeError

MAX_NODES = 20
NODE_IDS = tuple(f"X{letter}" for letter in string.ascii_uppercase[:MAX_NODES])


class ScenarioError(ExchangeError):
    """The scenario file cannot be read, or names nodes the federation does not have."""


class _Step(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def nodes(self) -> tuple[str, ...]:
        """The node ids this step acts on."""
        names = ("node", "peer", "provider", "partner")
        return tuple(getattr(self, n) for n in names if isinstance(getattr(self, n, None), str))


class PullRound(_Step):
    """Every node pulls a fresh release from every other; ``expect`` says how that ends."""

    shock: Literal["pull_round"]
    expect: Literal["served", "refused"] = "served"


class Offline(_Step):
    """A node's server stops; a pull round goes on with the others, then it comes back."""

    shock: Literal["offline"]
    node: str


class RotateKey(_Step):
    """A node rotates its identity key; its partners must keep verifying its answers."""

    shock: Literal["rotate_key"]
    node: str


class RevokeKey(_Step):
    """``node``'s operator revokes ``peer``'s current key; the peer's next pull is refused."""

    shock: Literal["revoke_key"]
    node: str
    peer: str


class Sunset(_Step):
    """The agreement of ``provider`` with ``partner`` reaches its sunset date."""

    shock: Literal["sunset"]
    provider: str
    partner: str


class Budget(_Step):
    """``partner`` pulls fresh queries from ``provider`` until its budget is exhausted."""

    shock: Literal["budget"]
    provider: str
    partner: str


class Correction(_Step):
    """An agency of ``node`` sends a bad file, then a correction that ``partner`` hears of."""

    shock: Literal["correction"]
    node: str
    partner: str


class Rollback(_Step):
    """``node``'s database is replaced by an old copy, behind its back."""

    shock: Literal["rollback"]
    node: str


class Escalation(_Step):
    """Two operators of ``provider`` widen its agreement with ``partner`` to districts."""

    shock: Literal["escalation"]
    provider: str
    partner: str
    hours: int = Field(default=24, ge=1, le=72)


Step = Annotated[
    PullRound | Offline | RotateKey | RevokeKey | Sunset | Budget | Correction | Rollback
    | Escalation,
    Field(discriminator="shock"),
]  # fmt: skip


class Scenario(BaseModel):
    """The whole exercise; ``nodes`` and ``seed`` may be overridden on the command line."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    description: str = ""
    seed: int = Field(default=1, ge=0)
    nodes: int = Field(default=3, ge=2, le=MAX_NODES)
    weeks: int = Field(default=12, ge=4, le=52)
    checkpoint_interval_seconds: int = Field(default=2, ge=1, le=60)
    budget_epsilon: float = Field(default=10.0, gt=0, le=1000)
    timeline: tuple[Step, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _known_nodes(self) -> Scenario:
        ids = set(self.node_ids)
        for number, step in enumerate(self.timeline, start=1):
            unknown = [n for n in step.nodes() if n not in ids]
            if unknown:
                raise ValueError(
                    f"step {number} ({step.shock}) names {', '.join(unknown)}, but a "
                    f"federation of {self.nodes} nodes has only {', '.join(self.node_ids)}"
                )
            if len(set(step.nodes())) != len(step.nodes()):
                raise ValueError(f"step {number} ({step.shock}) names one node twice")
        return self

    @property
    def node_ids(self) -> tuple[str, ...]:
        return NODE_IDS[: self.nodes]

    def with_overrides(self, *, nodes: int | None = None, seed: int | None = None) -> Scenario:
        """The scenario with ``--nodes`` and ``--seed`` applied (checked again)."""
        data = self.model_dump()
        if nodes is not None:
            data["nodes"] = nodes
        if seed is not None:
            data["seed"] = seed
        try:
            return Scenario.model_validate(data)
        except ValidationError as exc:
            raise ScenarioError(f"scenario {self.name}: {_first_error(exc)}") from None


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"])
    return f"{where}: {error['msg']}" if where else str(error["msg"])


def load(path: Path) -> Scenario:
    """Read and check a scenario file. Raises ScenarioError naming the place and reason."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ScenarioError(f"cannot read scenario {path}: {exc}") from None
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(f"scenario {path}: {_first_error(exc)}") from None
