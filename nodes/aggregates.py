"""The exact aggregate of a release: one SQL GROUP BY over current rows, laid over the key set.

SQL does the heavy part (millions of rows) as integer sums grouped by *stored* values; the
result (one row per stored group, thousands at most) is laid over the release's full
public key set with numpy: each group lands on its released cell (coarsened, or dropped if
it must not count, see `policies.keyspace`), and cells with no rows stay zero. The output
is one ``int64`` vector per measure, ready for the mechanism.

For case-based schemas every measure counts rows: the rows never leave, their counts may.

No sum here can overflow ``int64``: current rows never overlap and are unique per cell key,
and every stored value is at most its measure's declared maximum, so any sum of them (one
SQL group, or the groups laid on one released cell) is at most
``ReportSchema.largest_sum`` <= 2^62, which every schema checks when it is defined.
A count of rows is at most the number of rows stored.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import BigInteger, Connection, cast, func, select

from nodes.tables import cell_tables, reports
from policies.keyspace import KeySpace
from schemas.model import FieldType, SchemaKind

Counts = NDArray[np.int64]


def data_version(conn: Connection, schema_id: str) -> int:
    """The newest report of a schema. Any new or correcting report changes it, so a cached
    release is never served over data it did not see."""
    newest = conn.execute(
        select(func.max(reports.c.id)).where(reports.c.schema_id == schema_id)
    ).scalar()
    return int(newest or 0)


def statement(space: KeySpace, measures: tuple[str, ...]) -> Any:
    """The GROUP BY of a release: current rows, the week range, coded filters."""
    schema = space.schema
    table = cell_tables[schema.id]
    groups = [table.c[column.name] for column in space.columns]
    if schema.kind == SchemaKind.CASE_BASED:
        sums = [func.count().label(m) for m in measures]
    else:
        sums = [cast(func.sum(table.c[m]), BigInteger).label(m) for m in measures]
    query = select(*groups, *sums).where(table.c.superseded_by.is_(None))
    week = next((d for d in schema.dimensions if schema.dimension_type(d) == FieldType.WEEK), None)
    if week is not None:
        query = query.where(table.c[week] >= space.since, table.c[week] <= space.until)
    for name, codes in sorted(space.where_in.items()):
        query = query.where(table.c[name].in_(sorted(codes)))
    return query.group_by(*groups) if groups else query


def _fetch(conn: Connection, query: Any) -> list[tuple[Any, ...]]:
    """Run ``query`` on the driver's own cursor, in the caller's transaction: plain tuples,
    without SQLAlchemy's per-row objects (which cost as much as SQLite's scan of 10k groups)."""
    compiled = query.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    params = compiled.params
    args = tuple(params[n] for n in compiled.positiontup) if compiled.positional else params
    driver = conn.connection.driver_connection
    assert driver is not None
    cursor = driver.cursor()
    try:
        cursor.execute(compiled.string, args)
        return list(cursor.fetchall())
    finally:
        cursor.close()


def exact(conn: Connection, space: KeySpace, measures: tuple[str, ...]) -> dict[str, Counts]:
    """One int64 vector per measure over the full key set (row-major over ``space.axes``)."""
    rows = _fetch(conn, statement(space, measures))
    width = len(space.columns)
    columns: list[tuple[Any, ...]] = (
        list(zip(*rows, strict=True)) if rows else [() for _ in range(width + len(measures))]
    )
    flat = space.locate(len(rows), columns[:width])
    keep = flat >= 0
    out: dict[str, Counts] = {}
    for i, measure in enumerate(measures):
        values = np.fromiter((v or 0 for v in columns[width + i]), dtype=np.int64, count=len(rows))
        cells = np.zeros(space.size, dtype=np.int64)
        np.add.at(cells, flat[keep], values[keep])
        out[measure] = cells
    return out
