"""Engines for SQLite (the default) and PostgreSQL, and the one way to open a write transaction.

SQLite: Python's ``sqlite3`` does not begin a transaction before SELECTs, which breaks
repeatable reads; we follow SQLAlchemy's recipe (driver autocommit off, our own ``BEGIN``),
and writers begin with ``BEGIN IMMEDIATE`` so two writers never deadlock upgrading a read
lock. WAL with ``synchronous=FULL`` makes an acknowledged commit survive power loss.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url

_IMMEDIATE = "exchange_immediate"


def normalize_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL whatever driver the URL names."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str, **kwargs: Any) -> Engine:
    url = normalize_url(url)
    if make_url(url).get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
        _configure_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            "synchronous=FULL",
            "foreign_keys=ON",
            "busy_timeout=30000",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(_IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@contextmanager
def writing(engine: Engine, *, dry_run: bool = False) -> Iterator[Connection]:
    """A write transaction: commits when the block ends, rolls back if it raises.

    Everything an act changes (its rows, its budget, its audit entry) goes through one of
    these, so it is all there or none of it is. ``dry_run`` does all the work and rolls back,
    so a preview is exactly what the real act would have done.
    """
    with engine.connect() as conn:
        conn.execution_options(**{_IMMEDIATE: True})
        transaction = conn.begin()
        try:
            yield conn
        except BaseException:
            transaction.rollback()
            raise
        if dry_run:
            transaction.rollback()
        else:
            transaction.commit()


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A read-only transaction with a consistent snapshot on both backends."""
    with engine.connect() as conn, conn.begin():
        yield conn


def ping(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
