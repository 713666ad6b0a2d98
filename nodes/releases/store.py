"""Stored releases: the row reserved with the budget, completed with the noisy cells.

Cells are stored as the axes (the public key set) and one list of published values per
measure, ``None`` where suppressed: a compact form that round-trips exactly, so a cached
release is byte for byte what was first released.

Each release holds its partner's *slot* for its cache key (``cache_slot``, unique per
partner) from the moment it is reserved: a second identical request cannot reserve
another release while the first is computed, and waits for it (see ``nodes.releases.pipeline``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import rfc8785
from sqlalchemy import Connection, RowMapping, func, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from nodes.releases.tables import releases
from policies.decision import Allowed
from policies.keyspace import Axis
from policies.privacy import MeasureCost
from policies.query import EffectiveQuery

Values = dict[str, list[int | None]]


@dataclass(frozen=True)
class StoredRelease:
    id: int
    partner_id: str
    schema_id: str
    query: EffectiveQuery
    axes: tuple[Axis, ...]
    values: Values
    noise: tuple[MeasureCost, ...]
    mechanism: str
    delta: float | None
    epsilon_micro: int
    policy_hash: str
    created_at: dt.datetime
    #: the emergency escalation it was made under (`policies.escalation.Grant.statement`)
    escalation: dict[str, Any] | None = None


def cache_key(
    effective: EffectiveQuery, data_version: int, escalation: dict[str, Any] | None = None
) -> str:
    """Same effective query (the purpose aside) over the same data: the same key.

    A release made under an escalation is keyed to it too, so it is never served again
    once the escalation ends, nor served for it from a release made before it."""
    view: dict[str, Any] = {"query": effective.cache_view(), "data_version": data_version}
    if escalation is not None:
        view["escalation"] = escalation["id"]
    return hashlib.sha256(rfc8785.dumps(view)).hexdigest()


def insert_reserved(
    conn: Connection, *, decision: Allowed, cache_key: str, data_version: int, now: dt.datetime
) -> int | None:
    """The release row, written in the transaction that reserves its budget, holding the
    partner's slot for ``cache_key``; None (nothing written) if a release holds it already.

    On PostgreSQL an insert that meets a slot claimed by a transaction not yet committed
    waits for it to end; on SQLite writers are serialized anyway.
    """
    noise = [c.model_dump(mode="json") for c in decision.cost.measures]
    insert = postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert
    found = conn.execute(
        insert(releases)
        .values(
            partner_id=decision.partner_id,
            schema_id=decision.schema_id,
            status="reserved",
            cache_key=cache_key,
            data_version=data_version,
            agreement_id=decision.agreement_id,
            policy_hash=decision.policy_hash,
            mechanism=decision.cost.mechanism,
            epsilon_micro=decision.cost.epsilon_micro,
            delta=decision.cost.delta,
            query=decision.effective.model_dump_json(),
            decision=decision.model_dump_json(exclude={"effective", "cost", "budget"}),
            noise=json.dumps(noise),
            created_at=now,
            cache_slot=cache_key,
        )
        .on_conflict_do_nothing(index_elements=["partner_id", "cache_slot"])
        .returning(releases.c.id)
    ).scalar()
    return None if found is None else int(found)


@dataclass(frozen=True)
class Slot:
    """The release that holds a partner's slot for a cache key."""

    release_id: int
    released: bool
    created_at: dt.datetime


def slot(conn: Connection, *, partner_id: str, key: str) -> Slot | None:
    """Who holds the slot, if anyone; ``released`` once its cells are stored."""
    row = conn.execute(
        select(releases.c.id, releases.c.status, releases.c.created_at).where(
            releases.c.partner_id == partner_id, releases.c.cache_slot == key
        )
    ).first()
    return None if row is None else Slot(int(row.id), row.status == "released", row.created_at)


def give_up_slot(conn: Connection, release_id: int) -> None:
    """A reserved release that will never be completed frees its slot (it stays charged)."""
    conn.execute(
        update(releases)
        .where(releases.c.id == release_id, releases.c.status == "reserved")
        .values(cache_slot=None)
    )


def complete(
    conn: Connection, release_id: int, *, axes: tuple[Axis, ...], values: Values, now: dt.datetime
) -> None:
    cells = {"axes": [[a.dimension, list(a.keys)] for a in axes], "values": values}
    conn.execute(
        update(releases)
        .where(releases.c.id == release_id, releases.c.status == "reserved")
        .values(status="released", cells=json.dumps(cells, separators=(",", ":")), released_at=now)
    )


def _cached(partner_id: str, key: str) -> Any:
    return (
        select(releases)
        .where(
            releases.c.partner_id == partner_id,
            releases.c.cache_key == key,
            releases.c.status == "released",
        )
        .order_by(releases.c.id)
        .limit(1)
    )


def find_cached(conn: Connection, *, partner_id: str, key: str) -> StoredRelease | None:
    """The first completed release of this partner under this cache key, if any."""
    row = conn.execute(_cached(partner_id, key)).first()
    return None if row is None else _stored(row._mapping)


def cached_id(conn: Connection, *, partner_id: str, key: str) -> int | None:
    """Like `find_cached`, without reading the cells."""
    found = conn.execute(_cached(partner_id, key).with_only_columns(releases.c.id)).scalar()
    return None if found is None else int(found)


def get(conn: Connection, release_id: int) -> StoredRelease | None:
    row = conn.execute(
        select(releases).where(releases.c.id == release_id, releases.c.status == "released")
    ).first()
    return None if row is None else _stored(row._mapping)


@dataclass(frozen=True)
class Made:
    """One line of the list of releases this node made: who got what, at what cost."""

    id: int
    partner_id: str
    schema_id: str
    epsilon_micro: int
    created_at: dt.datetime


def listing(conn: Connection, *, limit: int) -> list[Made]:
    """Completed releases, newest first, without their cells."""
    rows = conn.execute(
        select(
            releases.c.id,
            releases.c.partner_id,
            releases.c.schema_id,
            releases.c.epsilon_micro,
            releases.c.created_at,
        )
        .where(releases.c.status == "released")
        .order_by(releases.c.id.desc())
        .limit(limit)
    ).all()
    return [Made(*row) for row in rows]


def counts(conn: Connection) -> list[tuple[str, str, str, int]]:
    """Completed releases per (partner, schema, agreement): one grouped query, for metrics.

    Only ``released`` rows count: a reserved row whose answer was lost released nothing.
    """
    rows = conn.execute(
        select(releases.c.partner_id, releases.c.schema_id, releases.c.agreement_id, func.count())
        .where(releases.c.status == "released")
        .group_by(releases.c.partner_id, releases.c.schema_id, releases.c.agreement_id)
        .order_by(releases.c.partner_id, releases.c.schema_id, releases.c.agreement_id)
    ).all()
    return [(r[0], r[1], r[2], int(r[3])) for r in rows]


def _stored(row: RowMapping) -> StoredRelease:
    cells = json.loads(row["cells"])
    return StoredRelease(
        id=row["id"],
        partner_id=row["partner_id"],
        schema_id=row["schema_id"],
        query=EffectiveQuery.model_validate_json(row["query"]),
        axes=tuple(Axis(dimension, tuple(keys)) for dimension, keys in cells["axes"]),
        values=cells["values"],
        noise=tuple(MeasureCost.model_validate(n) for n in json.loads(row["noise"])),
        mechanism=row["mechanism"],
        delta=row["delta"],
        epsilon_micro=row["epsilon_micro"],
        policy_hash=row["policy_hash"],
        created_at=row["created_at"],
        escalation=json.loads(row["decision"]).get("escalation"),
    )
