"""What each step of an exercise expected and what it saw, as a table and as JSON.

``decision`` is the part of an observation that the seed decides (served or refused, and by
which rule; flagged or not): two runs with one seed must agree on it. ``observed`` and
``evidence`` carry what differs between runs (release ids, noise, times, key ids).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from rich.markup import escape
from rich.table import Table


@dataclass(frozen=True)
class Check:
    step: int
    shock: str
    name: str
    expectation: str
    observed: str
    met: bool
    decision: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class Checks:
    """Collects a step's checks; each shock adds one per expectation."""

    def __init__(self, step: int, shock: str) -> None:
        self.step, self.shock = step, shock
        self.found: list[Check] = []

    def add(
        self,
        name: str,
        *,
        expectation: str,
        observed: str,
        met: bool,
        decision: str,
        **evidence: Any,
    ) -> Check:
        check = Check(self.step, self.shock, name, expectation, observed, met, decision, evidence)
        self.found.append(check)
        return check


def table(checks: list[Check]) -> Table:
    """The results as the exercise's director reads them."""
    shown = Table("#", "shock", "check", "expected", "observed", "met", title="Exercise results")
    for check in checks:
        shown.add_row(
            str(check.step),
            escape(check.shock),
            escape(check.name),
            escape(check.expectation),
            escape(check.observed),
            "[green]yes[/]" if check.met else "[bold red]NO[/]",
        )
    return shown
