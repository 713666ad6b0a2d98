"""Bulk inserts at the speed of the driver: ``executemany`` on SQLite, ``COPY`` on PostgreSQL.

SQLAlchemy's ORM and even Core ``insert()`` with dicts cost several microseconds a row; the
ingest path hands the driver plain tuples instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import Connection, Table


def insert_rows(
    conn: Connection, table: Table, columns: Sequence[str], rows: Iterable[tuple[object, ...]]
) -> None:
    names = ", ".join(columns)
    driver = conn.connection.driver_connection
    assert driver is not None
    if conn.dialect.name == "postgresql":
        with driver.cursor() as cursor:
            copy_sql = f"COPY {table.name} ({names}) FROM STDIN"
            with cursor.copy(copy_sql) as copy:
                for row in rows:
                    copy.write_row(row)
        return
    marks = ", ".join("?" for _ in columns)
    driver.executemany(f"INSERT INTO {table.name} ({names}) VALUES ({marks})", rows)  # noqa: S608
