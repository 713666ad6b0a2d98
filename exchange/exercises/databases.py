"""Where the exercise's nodes keep their data: SQLite files in their directories (the
default), or one fresh schema each in a PostgreSQL database (``--database-url``).

A schema per node is what the tests do (``tests/conftest.py``): the node's URL carries
``options=-csearch_path=<schema>``, so its server, its migrations and the runner see only
their own tables. The schemas are created before the nodes and dropped when the run ends,
whatever happens. The rollback shock's "old copy" of a node is then ``pg_dump --schema``
of its schema, put back by dropping the schema and ``pg_restore``-ing the dump.

The password never appears on a command line (``ps`` shows those) nor in a message: the
client tools get it through ``PGPASSWORD``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from nodes.database import make_engine
from schemas.errors import ExchangeError

DUMP_FILE = "database.pgdump"
TOOLS = ("pg_dump", "pg_restore")
_SCHEMA = re.compile(r"^exercise_[0-9a-f]{8}_[a-z]{2}$")


class DatabaseError(ExchangeError):
    """The exercise's database cannot be used, or a node's schema cannot be copied back."""


def _parsed(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseError("the database URL cannot be read (postgresql://...)") from None
    if parsed.get_backend_name() != "postgresql":
        raise DatabaseError(
            f"the database URL must be a PostgreSQL one (postgresql://...), not "
            f"{parsed.get_backend_name()}: without one, every node uses SQLite in its directory"
        )
    if "options" in parsed.query:
        raise DatabaseError(
            "the database URL must not set 'options': each node gets its own schema through "
            "them (options=-csearch_path=...)"
        )
    return parsed


def missing_tools() -> list[str]:
    """The PostgreSQL client tools the rollback copy needs that are not on PATH."""
    return [tool for tool in TOOLS if shutil.which(tool) is None]


@dataclass
class Databases:
    """The run's databases: ``url`` is empty on SQLite; ``schemas`` maps node id to the
    schema made for it (every schema in it is dropped by `drop`)."""

    url: str = ""
    schemas: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.url:
            _parsed(self.url)

    @property
    def kind(self) -> str:
        return "postgresql" if self.url else "sqlite"

    def create(self, node_ids: tuple[str, ...]) -> None:
        """Make one fresh schema per node. Raises DatabaseError if the server cannot be
        reached or refuses (the schemas made before the failure stay listed, for `drop`)."""
        if not self.url:
            return
        run = uuid.uuid4().hex[:8]
        engine = self._admin()
        try:
            for node_id in node_ids:
                schema = f"exercise_{run}_{node_id.lower()}"
                with engine.begin() as conn:
                    conn.execute(text(f"CREATE SCHEMA {schema}"))
                self.schemas[node_id] = schema
        except SQLAlchemyError as exc:
            raise DatabaseError(f"cannot create the nodes' schemas: {_reason(exc)}") from None
        finally:
            engine.dispose()

    def node_url(self, node_id: str) -> str:
        """The node's database URL for its settings; empty (SQLite in its directory) if the
        run has no PostgreSQL URL."""
        if not self.url:
            return ""
        separator = "&" if "?" in self.url else "?"
        return f"{self.url}{separator}options=-csearch_path%3D{self.schemas[node_id]}"

    def drop(self) -> list[str]:
        """Drop every schema this run made; return those that could not be dropped (with
        why), so the runner can say so instead of leaving them silently."""
        if not self.schemas:
            return []
        left: list[str] = []
        engine = self._admin()
        try:
            for node_id, schema in list(self.schemas.items()):
                try:
                    with engine.begin() as conn:  # a stray session must not hang the run
                        conn.execute(text("SET LOCAL lock_timeout = '15s'"))
                        conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
                except SQLAlchemyError as exc:
                    left.append(f"{schema}: {_reason(exc)}")
                else:
                    del self.schemas[node_id]
        finally:
            engine.dispose()
        return left

    def dump(self, node_id: str, into: Path) -> Path:
        """Copy the node's schema (the node must be stopped) into ``into/database.pgdump``.
        Raises DatabaseError naming a missing tool or what the tool said."""
        target = into / DUMP_FILE
        schema = self._schema(node_id)
        self._run(["pg_dump", "--format=custom", f"--schema={schema}", f"--file={target}"])
        target.chmod(0o600)
        return target

    def put_back(self, node_id: str, dump: Path) -> None:
        """Replace the node's schema by the dump of an older copy (the node must be stopped):
        the schema is dropped, then restored whole in one transaction."""
        if shutil.which("pg_restore") is None:  # before dropping anything
            raise DatabaseError(_missing("pg_restore"))
        schema = self._schema(node_id)
        engine = self._admin()
        try:
            with engine.begin() as conn:
                conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        except SQLAlchemyError as exc:
            raise DatabaseError(f"cannot drop schema {schema}: {_reason(exc)}") from None
        finally:
            engine.dispose()
        self._run(["pg_restore", "--no-owner", "--single-transaction", str(dump)])

    def _schema(self, node_id: str) -> str:
        schema = self.schemas.get(node_id, "")
        if not _SCHEMA.fullmatch(schema):  # only ever a name this run made
            raise DatabaseError(f"node {node_id} has no schema of this exercise")
        return schema

    def _admin(self) -> Engine:
        return make_engine(self.url)

    def _run(self, command: list[str]) -> None:
        """Run a client tool on this database. The password goes through ``PGPASSWORD``,
        never on the command line, which ``ps`` shows."""
        tool = command[0]
        if shutil.which(tool) is None:
            raise DatabaseError(_missing(tool))
        parsed = _parsed(self.url)
        env = dict(os.environ)
        if parsed.password:
            env["PGPASSWORD"] = str(parsed.password)
        plain = parsed.set(drivername="postgresql", password=None)
        dbname = "--dbname=" + plain.render_as_string(hide_password=False)
        done = subprocess.run(  # noqa: S603 (the PostgreSQL client, our own arguments)
            [*command, dbname], capture_output=True, text=True, check=False, env=env
        )
        if done.returncode != 0:
            raise DatabaseError(f"{tool} failed: {done.stderr.strip()[:500]}")


def _missing(tool: str) -> str:
    return (
        f"{tool} is not on PATH: the rollback copy of a PostgreSQL node needs the PostgreSQL "
        "client tools (Debian: postgresql-client, of the server's major version)"
    )


def _reason(exc: SQLAlchemyError) -> str:
    """The driver's first line, without the SQL or the URL."""
    said = str(getattr(exc, "orig", None) or exc).strip()
    return said.splitlines()[0][:300] if said else type(exc).__name__
