"""What came in and went out, for the operator's dashboard: grouped, indexed, never a scan
of the stored cells or of the whole audit log.

- `inflow_by_week`: reports and rows per schema per week, from the ``reports`` rows alone
  (each keeps its ``row_count``), grouped in SQL by the Monday of the week they arrived.
- `recent_refusals`: the newest refused pulls (``release`` refused by a rule or the budget,
  ``release.request`` refused at the signature), newest first: from the audit lookup index
  (`nodes.audit.lookup`) below the latest checkpoint, plus the few entries above it.
- `last_contacts`: per peer, the last time it pulled from us, we pulled from it, and we saw
  one of its checkpoints; one indexed ``ORDER BY id DESC LIMIT 1`` per peer and table.

Counts of releases and refusals already exist (`nodes.releases.store.counts`,
`nodes.audit.summary.release_refusals`); they are not repeated here.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Connection, Date, Engine, cast, func, literal_column, select
from sqlalchemy.sql.elements import ColumnElement

from nodes.audit.canonical import parse_time
from nodes.audit.checkpoint_store import latest_checkpoint
from nodes.audit.log import read_head
from nodes.audit.tables import audit_entries, audit_lookup, audit_peer_checkpoints
from nodes.audit.vocabulary import normalize
from nodes.database import reading
from nodes.federation_tables import received_releases
from nodes.releases.tables import releases
from nodes.tables import reports

#: The actions whose ``denied`` entries are refused pulls.
REFUSED_PULLS: Final = ("release", "release.request")


@dataclass(frozen=True, slots=True)
class WeekInflow:
    """Reports of one schema that arrived in the week starting ``week_start`` (a Monday, UTC)."""

    schema_id: str
    week_start: dt.date
    reports: int
    rows: int
    superseded: int

    @property
    def iso_week(self) -> str:
        year, week, _day = self.week_start.isocalendar()
        return f"{year}-W{week:02d}"


def _monday(conn: Connection, column: Any) -> ColumnElement[Any]:
    """The Monday (UTC) of the week ``column`` falls in, as SQL for this database."""
    if conn.dialect.name == "postgresql":
        utc = func.timezone("UTC", column)
        return cast(func.date_trunc(literal_column("'week'"), utc), Date)
    # SQLite keeps UTC text: go to the week's Sunday (or stay on it), then back six days.
    return func.date(column, "weekday 0", "-6 days")


def inflow_by_week(engine: Engine, *, since: dt.datetime) -> list[WeekInflow]:
    """Per schema and week from ``since`` on: reports received, their rows and the cells
    they superseded; newest week first. One grouped query over ``reports``."""
    with reading(engine) as conn:
        week = _monday(conn, reports.c.received_at).label("week")
        rows = conn.execute(
            select(
                reports.c.schema_id,
                week,
                func.count(),
                func.coalesce(func.sum(reports.c.row_count), 0),
                func.coalesce(func.sum(reports.c.superseded_rows), 0),
            )
            .where(reports.c.received_at >= since)
            .group_by(reports.c.schema_id, week)
            .order_by(week.desc(), reports.c.schema_id)
        ).all()
    return [
        WeekInflow(
            schema_id=schema_id,
            week_start=start if isinstance(start, dt.date) else dt.date.fromisoformat(start),
            reports=int(count),
            rows=int(stored),
            superseded=int(superseded),
        )
        for schema_id, start, count, stored, superseded in rows
    ]


@dataclass(frozen=True, slots=True)
class Refusal:
    """One refused pull as the audit log recorded it; "" where the entry names nothing."""

    seq: int
    time: dt.datetime
    action: str
    partner: str
    schema: str
    rule: str
    reason: str


def _refusal(seq: int, data: bytes) -> Refusal | None:
    entry = normalize(json.loads(data))
    if entry["action"] not in REFUSED_PULLS or entry["outcome"] != "denied":
        return None
    return Refusal(
        seq=seq,
        time=parse_time(entry["time"]),
        action=entry["action"],
        partner=entry.get("partner") or "",
        schema=entry.get("schema") or "",
        rule=entry.get("rule") or "",
        reason=entry.get("reason") or "",
    )


def recent_refusals(engine: Engine, *, limit: int) -> list[Refusal]:
    """The ``limit`` newest refused pulls, newest first.

    Entries above the latest checkpoint (not indexed yet) are read newest first; below it,
    one query per action on ``ix_audit_lookup_action_outcome_seq`` walks back from the end.
    """
    found: list[Refusal] = []
    with reading(engine) as conn:
        signed = latest_checkpoint(conn)  # before the head: the index covers exactly it
        head = read_head(conn)
        covered = 0 if signed is None else signed.checkpoint.tree_size
        if head is not None and head.size > covered:
            tail = conn.execute(
                select(audit_entries.c.seq, audit_entries.c.entry)
                .where(audit_entries.c.seq >= covered)
                .order_by(audit_entries.c.seq.desc())
                .execution_options(yield_per=500)
            )
            for seq, data in tail:
                refusal = _refusal(int(seq), bytes(data))
                if refusal is not None:
                    found.append(refusal)
                    if len(found) == limit:
                        break
            tail.close()
        wanted = limit - len(found)
        if wanted > 0 and covered > 0:
            seqs: list[int] = []
            for action in REFUSED_PULLS:
                seqs += conn.execute(
                    select(audit_lookup.c.seq)
                    .where(
                        audit_lookup.c.action == action,
                        audit_lookup.c.outcome == "denied",
                        audit_lookup.c.seq < covered,
                    )
                    .order_by(audit_lookup.c.seq.desc())
                    .limit(wanted)
                ).scalars()
            chosen = sorted(seqs, reverse=True)[:wanted]
            rows = conn.execute(
                select(audit_entries.c.seq, audit_entries.c.entry)
                .where(audit_entries.c.seq.in_(chosen))
                .order_by(audit_entries.c.seq.desc())
            )
            found += [r for seq, data in rows if (r := _refusal(int(seq), bytes(data)))]
    return found


@dataclass(frozen=True, slots=True)
class Contact:
    """When this node last heard from a peer, each way."""

    peer_id: str
    pulled_from_us: dt.datetime | None  # the last release we served it (or reserved for it)
    pulled_by_us: dt.datetime | None  # the last release we received from it
    checkpoint_seen: dt.datetime | None  # the last checkpoint of its log we were shown

    @property
    def last(self) -> dt.datetime | None:
        moments = [m for m in (self.pulled_from_us, self.pulled_by_us, self.checkpoint_seen) if m]
        return max(moments) if moments else None


def _newest(conn: Connection, query: Any) -> dt.datetime | None:
    found = conn.execute(query.limit(1)).scalar()
    return found if isinstance(found, dt.datetime) else None


def last_contacts(engine: Engine, peer_ids: Iterable[str]) -> dict[str, Contact]:
    """Per peer id: its `Contact`. Three indexed single-row reads per peer."""
    out: dict[str, Contact] = {}
    with reading(engine) as conn:
        for peer_id in peer_ids:
            out[peer_id] = Contact(
                peer_id=peer_id,
                pulled_from_us=_newest(
                    conn,
                    select(releases.c.created_at)
                    .where(releases.c.partner_id == peer_id)
                    .order_by(releases.c.id.desc()),
                ),
                pulled_by_us=_newest(
                    conn,
                    select(received_releases.c.received_at)
                    .where(received_releases.c.peer_id == peer_id)
                    .order_by(received_releases.c.id.desc()),
                ),
                checkpoint_seen=_newest(
                    conn,
                    select(audit_peer_checkpoints.c.received_at)
                    .where(audit_peer_checkpoints.c.peer_id == peer_id)
                    .order_by(audit_peer_checkpoints.c.id.desc()),
                ),
            )
    return out
