"""Reading the log the way an auditor at a terminal does: filter entries, count them.

Entries are read in seq order, parsed and mapped to today's vocabulary
(`nodes.audit.vocabulary.normalize`), so format-1 entries count under the same outcome and
actor spellings as new ones. Reading is a stream: the whole log is never held in memory.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select

from nodes.audit import queries
from nodes.audit.canonical import parse_time
from nodes.audit.tables import audit_entries
from nodes.audit.vocabulary import normalize
from nodes.database import reading


@dataclass(frozen=True, slots=True)
class Query:
    """Exact matches on the structured fields; ``since`` inclusive, ``until`` exclusive."""

    actor: str | None = None
    action: str | None = None
    outcome: str | None = None
    partner: str | None = None
    schema: str | None = None
    rule: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def matches(self, entry: dict[str, Any]) -> bool:
        for name in ("actor", "action", "outcome", "partner", "schema", "rule"):
            wanted = getattr(self, name)
            if wanted is not None and entry.get(name) != wanted:
                return False
        if self.since is None and self.until is None:
            return True
        time = parse_time(entry["time"])
        return (self.since is None or time >= self.since) and (
            self.until is None or time < self.until
        )


def entries(engine: Engine, query: Query, *, start: int = 0) -> Iterator[dict[str, Any]]:
    """Matching entries from ``start`` on, normalized, in seq order."""
    with reading(engine) as conn:
        rows = conn.execute(
            select(audit_entries.c.entry)
            .where(audit_entries.c.seq >= start)
            .order_by(audit_entries.c.seq)
            .execution_options(yield_per=5000)
        )
        for (data,) in rows:
            entry = normalize(json.loads(bytes(data)))
            if query.matches(entry):
                yield entry


@dataclass
class Summary:
    """Totals of the matching entries: per (partner, action, outcome), epsilon charged, and
    refusals per (partner, rule) for entries that name the rule that refused them."""

    entries: int = 0
    counts: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    epsilon_micro: Counter[str] = field(default_factory=Counter)
    rules: Counter[tuple[str, str]] = field(default_factory=Counter)

    def add(self, entry: dict[str, Any]) -> None:
        partner = entry.get("partner") or "-"
        self.entries += 1
        self.counts[(partner, entry["action"], entry["outcome"])] += 1
        if entry.get("rule"):
            self.rules[(partner, entry["rule"])] += 1
        if entry.get("epsilon_micro"):
            self.epsilon_micro[partner] += int(entry["epsilon_micro"])


def summarize(engine: Engine, query: Query) -> Summary:
    """Count every matching entry."""
    summary = Summary()
    for entry in entries(engine, query):
        summary.add(entry)
    return summary


def release_refusals(engine: Engine) -> Counter[tuple[str, str, str]]:
    """Refused releases (``release`` entries, outcome ``denied``) per (partner, schema, rule);
    the rule is "" for entries written before refusals named it.

    Pages through the ``release`` entries by the lookup index (`queries.entries`), so the
    cost grows with the releases asked for, not with the whole log.
    """
    counts: Counter[tuple[str, str, str]] = Counter()
    start: int | None = 0
    while start is not None:
        page = queries.entries(engine, start=start, limit=queries.MAX_PAGE, action="release")
        for raw in page.entries:
            entry = normalize(raw)
            if entry["outcome"] == "denied":
                where = (entry.get("partner") or "", entry.get("schema") or "")
                counts[(*where, entry.get("rule") or "")] += 1
        start = page.next_start
    return counts
