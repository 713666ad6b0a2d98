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
from typing import Any

from sqlalchemy import Engine, func, select

from nodes.audit.checkpoint_store import latest_checkpoint
from nodes.audit.log import read_head
from nodes.audit.lookup import Filters
from nodes.audit.tables import audit_entries, audit_lookup
from nodes.audit.vocabulary import normalize
from nodes.database import reading


def entries(engine: Engine, query: Filters, *, start: int = 0) -> Iterator[dict[str, Any]]:
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


def summarize(engine: Engine, query: Filters) -> Summary:
    """Count every matching entry."""
    summary = Summary()
    for entry in entries(engine, query):
        summary.add(entry)
    return summary


def outcome_counts(
    engine: Engine, *, action: str, outcome: str | None = None
) -> Counter[tuple[str, str, str, str]]:
    """Entries of ``action`` (and ``outcome``, if given) per (outcome, partner, schema, rule),
    normalized; "" where an entry names none.

    One grouped query on the lookup index (``ix_audit_lookup_outcomes``) for the entries the
    latest checkpoint covers, plus a read of the entries above it (at most one checkpoint
    interval of activity, none right after signing): the cost of a scrape does not grow
    with the log.
    """
    table = audit_lookup
    counts: Counter[tuple[str, str, str, str]] = Counter()
    with reading(engine) as conn:
        signed = latest_checkpoint(conn)  # before the head: the index covers exactly it
        head = read_head(conn)
        covered = 0 if signed is None else signed.checkpoint.tree_size
        columns = (table.c.outcome, table.c.partner, table.c.schema, table.c.rule)
        wanted = [table.c.action == action, table.c.seq < covered]
        if outcome is not None:
            wanted.append(table.c.outcome == outcome)
        grouped = conn.execute(select(*columns, func.count()).where(*wanted).group_by(*columns))
        for said, partner, schema, rule, n in grouped:
            counts[(said or "", partner or "", schema or "", rule or "")] += int(n)
        if head is None or head.size <= covered:
            return counts
        tail = conn.execute(
            select(audit_entries.c.entry)
            .where(audit_entries.c.seq >= covered)
            .execution_options(yield_per=1000)
        )
        for (data,) in tail:
            entry = normalize(json.loads(bytes(data)))
            if entry["action"] == action and outcome in (None, entry["outcome"]):
                said, partner, schema, rule = (
                    entry[k] or "" for k in ("outcome", "partner", "schema", "rule")
                )
                counts[(said, partner, schema, rule)] += 1
    return counts


def release_refusals(engine: Engine) -> Counter[tuple[str, str, str]]:
    """Refused releases (``release`` entries, outcome ``denied``) per (partner, schema, rule);
    the rule is "" for entries written before refusals named it (`outcome_counts`)."""
    counts: Counter[tuple[str, str, str]] = Counter()
    for (_outcome, *labels), n in outcome_counts(
        engine, action="release", outcome="denied"
    ).items():
        partner, schema, rule = labels
        counts[(partner, schema, rule)] += n
    return counts
