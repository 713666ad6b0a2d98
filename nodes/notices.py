"""Correction notices: the partners whose releases an agency's correction affected.

A notice is reporting metadata, never data: the schema, the epi weeks that were restated
(only those inside the partner's affected releases, so it learns nothing about weeks it
never received) and the ids of its affected releases. No value, area, stratum, row count,
direction of change or agency goes in (docs/policy.md says why this reveals nothing about a
person). It is written in the transaction that stores the correcting report, so a notice
exists exactly when the correction does, and is kept: partners page through theirs by id.

``report_id`` stays on our side (the audit entry links the notice to the correction for our
auditors); the partner's document (`document`) leaves it out.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    select,
)

from nodes.audit.log import append
from nodes.database import reading, writing
from nodes.federation_tables import peers  # noqa: F401 (received_notices refers to it)
from nodes.releases.tables import releases
from nodes.tables import UTCDateTime, cell_tables, metadata
from nodes.times import utc_text
from schemas.model import ReportSchema

#: The most notices one fetch answers; the partner asks again from the last id it got.
PAGE = 100

correction_notices = Table(
    "correction_notices",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("partner_id", String(64), nullable=False),
    Column("schema_id", String(64), nullable=False),
    Column("report_id", Integer, ForeignKey("reports.id"), nullable=False),  # never shown
    Column("weeks", Text, nullable=False),  # JSON array of corrected epi weeks, sorted
    Column("release_ids", Text, nullable=False),  # JSON array of affected release ids
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_correction_notices_partner", "partner_id", "id"),
)

#: The partner's side: notices received from peers, with the signed exchange that brought
#: them (``nodes.received_notices``).
received_notices = Table(
    "received_notices",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("peer_id", String(32), ForeignKey("peers.id"), nullable=False),
    Column("notice_id", Integer, nullable=False),  # the peer's id for it
    Column("schema_id", String(64), nullable=False),
    Column("document", Text, nullable=False),  # the notice, as in the signed body
    Column("key_id", String(43), nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("request_method", String(10), nullable=False),
    Column("request_url", Text, nullable=False),
    Column("request_headers", Text, nullable=False),
    Column("request_body", LargeBinary, nullable=False),
    Column("response_status", Integer, nullable=False),
    Column("response_headers", Text, nullable=False),
    Column("response_body", LargeBinary, nullable=False),
    UniqueConstraint("peer_id", "notice_id", name="uq_received_notices_peer_id"),
)


_WEEK = re.compile(r"^([0-9]{4})-?W([0-9]{1,2})$")


def _week(text: str) -> tuple[int, int]:
    match = _WEEK.match(text)
    if match is None:
        raise ValueError(f"'{text}' is not an epi week")
    return int(match[1]), int(match[2])


@dataclass(frozen=True)
class Notice:
    id: int
    partner_id: str
    schema_id: str
    weeks: tuple[str, ...]
    release_ids: tuple[int, ...]
    created_at: dt.datetime

    def document(self) -> dict[str, Any]:
        """What the partner gets: reporting metadata only."""
        return {
            "notice_id": self.id,
            "schema": self.schema_id,
            "weeks": list(self.weeks),
            "release_ids": list(self.release_ids),
            "created_at": utc_text(self.created_at),
        }


@dataclass(frozen=True)
class Pending:
    """A notice worked out, not yet written (see `affected`)."""

    partner_id: str
    schema_id: str
    weeks: tuple[str, ...]
    release_ids: tuple[int, ...]


def _corrected_weeks(conn: Connection, schema: ReportSchema, report_id: int) -> set[str] | None:
    """The weeks the correction ``report_id`` restated; None for a schema without weeks.

    Those of the rows it superseded; and where the week is not part of the cell key (a case
    of a line list may move to another week), every week of the report too, since its new
    rows changed those weeks' counts. Superseded rows are not indexed by ``superseded_by``,
    so this scans the cell table: it runs only for a correction of a schema some partner
    received releases of.
    """
    table = cell_tables[schema.id]
    if "week" not in table.c:
        return None
    query = select(table.c.week).where(table.c.superseded_by == report_id).distinct()
    weeks = {str(week) for week in conn.execute(query).scalars()}
    if "week" not in schema.cell_key:
        query = select(table.c.week).where(table.c.report_id == report_id).distinct()
        weeks.update(str(week) for week in conn.execute(query).scalars())
    return weeks


def affected(
    conn: Connection, *, schema: ReportSchema, report_id: int, superseded: int
) -> list[Pending]:
    """One pending notice per partner with a release of ``schema`` whose weeks the
    correction ``report_id`` restated. Call in the storing transaction, before its audit
    entry (the queries run before the audit head is locked)."""
    if superseded == 0:
        return []
    released = conn.execute(
        select(releases.c.id, releases.c.partner_id, releases.c.query)
        .where(releases.c.schema_id == schema.id, releases.c.status == "released")
        .order_by(releases.c.id)
    ).all()
    if not released:
        return []
    corrected = _corrected_weeks(conn, schema, report_id)
    found: dict[str, tuple[set[str], list[int]]] = {}
    for release_id, partner_id, query in released:
        effective = json.loads(query)
        since, until = _week(effective["since"]), _week(effective["until"])
        if corrected is None:
            inside: set[str] = set()
        else:
            inside = {w for w in corrected if since <= _week(w) <= until}
            if not inside:
                continue
        weeks, ids = found.setdefault(partner_id, (set(), []))
        weeks.update(inside)
        ids.append(int(release_id))
    return [
        Pending(partner, schema.id, tuple(sorted(weeks, key=_week)), tuple(ids))
        for partner, (weeks, ids) in sorted(found.items())
    ]


def record(
    conn: Connection, pending: list[Pending], *, report_id: int, now: dt.datetime
) -> list[int]:
    """Write the pending notices and their ``notice.create`` entries; return their ids."""
    made: list[int] = []
    for notice in pending:
        notice_id = conn.execute(
            correction_notices.insert()
            .values(
                partner_id=notice.partner_id,
                schema_id=notice.schema_id,
                report_id=report_id,
                weeks=json.dumps(list(notice.weeks)),
                release_ids=json.dumps(list(notice.release_ids)),
                created_at=now,
            )
            .returning(correction_notices.c.id)
        ).scalar_one()
        weeks = ", ".join(notice.weeks) or "all weeks"
        releases_text = ", ".join(str(i) for i in notice.release_ids)
        append(
            conn,
            actor="node",
            role="node",
            action="notice.create",
            resource=f"notice:{notice_id}",
            outcome="allowed",
            reason=f"report {report_id} corrected {weeks}; affects releases {releases_text}",
            partner=notice.partner_id,
            schema=notice.schema_id,
            now=now,
        )
        made.append(int(notice_id))
    return made


def _notice(row: Any) -> Notice:
    m = row._mapping
    return Notice(
        id=m["id"],
        partner_id=m["partner_id"],
        schema_id=m["schema_id"],
        weeks=tuple(json.loads(m["weeks"])),
        release_ids=tuple(json.loads(m["release_ids"])),
        created_at=m["created_at"],
    )


def for_partner(
    conn: Connection, *, partner_id: str, after: int = 0, limit: int = PAGE
) -> list[Notice]:
    """The partner's own notices with ids above ``after``, oldest first."""
    query = (
        select(correction_notices)
        .where(correction_notices.c.partner_id == partner_id, correction_notices.c.id > after)
        .order_by(correction_notices.c.id)
        .limit(limit)
    )
    return [_notice(row) for row in conn.execute(query)]


def listing(engine: Engine, *, limit: int = PAGE) -> list[Notice]:
    """Every partner's notices, newest first (the operator's view)."""
    query = select(correction_notices).order_by(correction_notices.c.id.desc()).limit(limit)
    with reading(engine) as conn:
        return [_notice(row) for row in conn.execute(query)]


def fetch(
    engine: Engine, *, partner_id: str, after: int, now: dt.datetime
) -> tuple[list[Notice], bool]:
    """The partner's next page of notices after ``after``, and whether more wait; each one
    delivered is audited (``notice.fetch``). Call only for an authenticated partner: it
    only ever sees its own. An empty page (partners ask after every pull) writes nothing."""
    with reading(engine) as conn:
        found = for_partner(conn, partner_id=partner_id, after=after, limit=PAGE + 1)
    page = found[:PAGE]
    if page:
        with writing(engine) as conn:  # notices never change: what was read is what goes
            for notice in page:
                append(
                    conn,
                    actor=f"partner:{partner_id}",
                    role="partner",
                    action="notice.fetch",
                    resource=f"notice:{notice.id}",
                    outcome="allowed",
                    reason=f"correction notice {notice.id} delivered, signed",
                    partner=partner_id,
                    schema=notice.schema_id,
                    now=now,
                )
    return page, len(found) > PAGE
