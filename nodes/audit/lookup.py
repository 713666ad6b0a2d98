"""Finding entries by actor, action and time without indexing on the append path.

An append writes only the entry's bytes and leaf hash: every secondary index would be paid
by every act (benchmarks/audit.py). The filter columns are indexed in ``audit_lookup``
instead, in batches, by `index_entries` when a checkpoint is signed (same transaction as
the subtrees, so both cover exactly the largest checkpoint). `find` answers a filter from
the index below that size and by reading the few newer entries (at most one checkpoint
interval of activity) above it.

Besides the filter columns, each row keeps the entry's ``outcome``, ``partner``, ``schema``
and ``rule`` in today's vocabulary (`indexed_fields`), so counting refusals per rule is one
grouped query on an index (`nodes.audit.summary.outcome_counts`), not a read of the log.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, insert, select

from nodes.audit.canonical import parse_time
from nodes.audit.tables import audit_entries, audit_lookup
from nodes.audit.vocabulary import normalize

_BATCH = 5000


#: Fields matched exactly; the last four are read in today's vocabulary (`normalize`).
MATCHED = ("actor", "action", "outcome", "partner", "schema", "rule")


@dataclass(frozen=True, slots=True)
class Filters:
    """Exact matches on the structured fields; ``since`` inclusive, ``until`` exclusive.

    None matches anything. One type for the auditor API (`nodes.audit.reading`) and the CLI
    (`nodes.audit.summary`), so both filter the same way.
    """

    actor: str | None = None
    action: str | None = None
    outcome: str | None = None
    partner: str | None = None
    schema: str | None = None
    rule: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    @property
    def any(self) -> bool:
        return any(getattr(self, name) is not None for name in (*MATCHED, "since", "until"))

    def matches(self, entry: dict[str, Any]) -> bool:
        """Whether an entry, parsed and normalized, passes every filter."""
        for name in MATCHED:
            wanted = getattr(self, name)
            if wanted is not None and entry.get(name) != wanted:
                return False
        if self.since is None and self.until is None:
            return True
        time = parse_time(entry["time"])
        return (self.since is None or time >= self.since) and (
            self.until is None or time < self.until
        )


def index_entries(conn: Connection, start: int, stop: int) -> None:
    """Index entries ``start..stop-1`` (already stored) in ``audit_lookup``."""
    for low in range(start, stop, _BATCH):
        rows = conn.execute(
            select(audit_entries.c.seq, audit_entries.c.entry).where(
                audit_entries.c.seq >= low, audit_entries.c.seq < min(low + _BATCH, stop)
            )
        ).all()
        batch = [{"seq": seq, **indexed_fields(bytes(data))} for seq, data in rows]
        if batch:
            conn.execute(insert(audit_lookup), batch)


def indexed_fields(data: bytes) -> dict[str, Any]:
    """The lookup row of an entry's stored bytes (without ``seq``).

    ``time``, ``actor`` and ``action`` as stored (what `Filters` matches); ``outcome``,
    ``partner``, ``schema`` and ``rule`` normalized, so a format-1 ``rejected`` counts as
    ``denied`` like `nodes.audit.summary` reads it. Migration 0009 backfills with this too.
    """
    entry = json.loads(data)
    today = normalize(entry)
    return {
        "time": parse_time(entry["time"]),
        "actor": entry["actor"],
        "action": entry["action"],
        "outcome": today["outcome"],
        "partner": today["partner"],
        "schema": today["schema"],
        "rule": today["rule"],
    }


def where(query: Select[Any], filters: Filters) -> Select[Any]:
    """``query`` on ``audit_lookup``, narrowed to the entries that pass ``filters``."""
    table = audit_lookup
    for name in MATCHED:
        wanted = getattr(filters, name)
        if wanted is not None:
            query = query.where(table.c[name] == wanted)
    if filters.since is not None:
        query = query.where(table.c.time >= filters.since)
    if filters.until is not None:
        query = query.where(table.c.time < filters.until)
    return query


def find(conn: Connection, filters: Filters, *, start: int, limit: int, indexed: int) -> list[int]:
    """The first ``limit`` seqs from ``start`` on that pass ``filters``, in order.

    ``indexed`` is the size the lookup index covers (the largest checkpoint's, read in the
    same transaction before calling).
    """
    table = audit_lookup
    query = where(select(table.c.seq), filters).where(table.c.seq >= start, table.c.seq < indexed)
    found = [int(s) for s in conn.execute(query.order_by(table.c.seq).limit(limit)).scalars()]
    if len(found) == limit:
        return found
    tail = conn.execute(
        select(audit_entries.c.seq, audit_entries.c.entry)
        .where(audit_entries.c.seq >= max(start, indexed))
        .order_by(audit_entries.c.seq)
        .execution_options(yield_per=1000)
    )
    for seq, data in tail:
        if filters.matches(normalize(json.loads(bytes(data)))):
            found.append(int(seq))
            if len(found) == limit:
                break
    tail.close()
    return found
