"""Fixtures: every storage test runs on SQLite and, when EXCHANGE_TEST_POSTGRES_URL is set, on
PostgreSQL too (each test in a schema of its own, dropped afterwards).

A new node's database is not migrated migration by migration for every test: the
migrations run once per session into a template, which each new node then copies (see
``TemplateMigrations``). Tests that migrate a database themselves still run them.

Tests marked ``slow`` (server processes, long end-to-end runs) are left out of a plain local
``pytest``; CI (``CI`` set, as ``.ci/run`` does) runs them, and so do ``-m slow`` or naming
their files.

Under CI Hypothesis draws the same examples on every run, so a commit is green or red by its
code, not by a lucky draw; run the tests without ``CI`` to explore new examples.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import settings as hypothesis_settings
from sqlalchemy import Engine, create_engine, event, inspect, text

import nodes.directory
from exchange.api.app import create_app
from nodes import migrate, tokens
from nodes.database import make_engine
from nodes.directory import init_node
from nodes.node import Node
from nodes.settings import NodeSettings

hypothesis_settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

#: The demo federation and a real browser, for the dashboard's browser tests.
pytest_plugins = ["tests.browser_support"]

POSTGRES_URL = os.environ.get("EXCHANGE_TEST_POSTGRES_URL", "")
NO_POSTGRES = (
    "EXCHANGE_TEST_POSTGRES_URL is not set; PostgreSQL tests need a server (.ci/run sets it)"
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave out ``slow`` tests from a plain local run (no ``-m``, no paths named, no CI)."""
    if (
        os.environ.get("CI")
        or config.option.markexpr
        or config.args_source != pytest.Config.ArgsSource.TESTPATHS
    ):
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]


REAL_UPGRADE = migrate.upgrade


class TemplateMigrations:
    """Stands in for ``nodes.migrate`` in ``nodes.directory``: a new node's empty database gets
    a copy of one migrated once per session (per backend), not every migration again.

    SQLite: the template file is copied with SQLite's backup API. PostgreSQL: the statements
    the migrations sent to the template schema are recorded and replayed, in one transaction,
    into the new (per-test) schema. Anything but "bring an empty database to head" goes to
    the real ``nodes.migrate``.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.sqlite_template: Path | None = None
        self.postgres_statements: list[tuple[str, Any, bool]] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(migrate, name)

    def upgrade(self, engine: Engine, *revision: str) -> None:
        if (
            migrate.upgrade is not REAL_UPGRADE  # a test's stand-in (a failing migration)
            or revision not in ((), ("head",))
            or engine.dialect.name not in ("sqlite", "postgresql")
            or inspect(engine).get_table_names()
        ):
            migrate.upgrade(engine, *revision)
        elif engine.dialect.name == "sqlite":
            self._copy_sqlite(engine)
        else:
            self._replay_postgres(engine)

    def _copy_sqlite(self, engine: Engine) -> None:
        if self.sqlite_template is None:
            path = self.directory / "template.sqlite3"
            made = make_engine(f"sqlite:///{path}")
            try:
                REAL_UPGRADE(made)
            finally:
                made.dispose()
            self.sqlite_template = path
        target = engine.raw_connection()
        try:
            with closing(sqlite3.connect(self.sqlite_template)) as source:
                source.backup(target.driver_connection)  # type: ignore[arg-type]
        finally:
            target.close()

    def _replay_postgres(self, engine: Engine) -> None:
        if self.postgres_statements is None:
            self.postgres_statements = _recorded_migrations()
        with engine.begin() as conn:
            for statement, parameters, many in self.postgres_statements:
                if many or parameters:
                    conn.exec_driver_sql(statement, parameters)
                else:
                    conn.exec_driver_sql(statement)


def _recorded_migrations() -> list[tuple[str, Any, bool]]:
    """Migrate a scratch schema (dropped afterwards), recording every statement that changed
    it: consecutive ones without parameters joined into one script, one round trip."""
    recorded: list[tuple[str, Any, bool]] = []
    with contextmanager(postgres_schema_url)() as url:
        engine = make_engine(url)

        @event.listens_for(engine, "before_cursor_execute")
        def record(
            _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, many: bool
        ) -> None:
            recorded.append((statement, parameters, many))

        try:
            REAL_UPGRADE(engine)
        finally:
            engine.dispose()
    batches: list[tuple[str, Any, bool]] = []
    for statement, parameters, many in recorded:
        if statement.lstrip().upper().startswith("SELECT"):
            continue  # reads: the migrations' own look-ups, on an empty database
        if not (parameters or many) and batches and not (batches[-1][1] or batches[-1][2]):
            batches[-1] = (f"{batches[-1][0]};\n{statement}", parameters, many)
        else:
            batches.append((statement, parameters, many))
    return batches


@pytest.fixture(scope="session", autouse=True)
def template_migrations(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemplateMigrations]:
    templates = TemplateMigrations(tmp_path_factory.mktemp("template"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(nodes.directory, "migrate", templates)
        yield templates


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'node.sqlite3'}"
        return
    if not POSTGRES_URL:
        pytest.skip(NO_POSTGRES)
    yield from postgres_schema_url()


def postgres_schema_url() -> Iterator[str]:
    """A URL whose connections see only a fresh schema of their own."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    separator = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> NodeSettings:
    settings, _key = init_node(
        tmp_path / "node", node_id="XA", name="Republic of XA", database_url=database_url
    )
    return settings


@pytest.fixture
def node(settings: NodeSettings) -> Iterator[Node]:
    opened = Node.open(settings)
    yield opened
    opened.close()


@pytest.fixture
def client(settings: NodeSettings, node: Node) -> Iterator[TestClient]:
    with TestClient(create_app(settings, node=node)) as test_client:
        yield test_client


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@pytest.fixture
def agency_secret(node: Node) -> str:
    _record, secret = tokens.issue_token(
        node.engine,
        name="moh-surveillance",
        role="agency",
        schemas=("weekly_epi@1", "line_list@1"),
        now=now(),
    )
    return secret


@pytest.fixture
def agency(agency_secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {agency_secret}"}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_urls(request: pytest.FixtureRequest) -> Iterator[Iterator[str]]:
    """Fresh database URLs for several nodes in one test (federation): SQLite in each node's
    directory, or one PostgreSQL schema per node (dropped afterwards)."""
    if request.param == "sqlite":
        yield itertools.repeat("")
        return
    if not POSTGRES_URL:
        pytest.skip(NO_POSTGRES)
    with ExitStack() as stack:

        def fresh() -> Iterator[str]:
            while True:
                yield stack.enter_context(contextmanager(postgres_schema_url)())

        yield fresh()


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as opened:
        yield opened
