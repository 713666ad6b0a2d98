"""Fixtures: every storage test runs on SQLite and, when EXCHANGE_TEST_POSTGRES_URL is set, on
PostgreSQL too (each test in a schema of its own, dropped afterwards).

Under CI (``CI`` set, as ``.ci/run`` does) Hypothesis draws the same examples on every run,
so a commit is green or red by its code, not by a lucky draw; run the tests without ``CI``
to explore new examples.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import settings as hypothesis_settings
from sqlalchemy import create_engine, text

from exchange.api.app import create_app
from nodes import tokens
from nodes.directory import init_node
from nodes.node import Node
from nodes.settings import NodeSettings

hypothesis_settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

POSTGRES_URL = os.environ.get("EXCHANGE_TEST_POSTGRES_URL", "")
NO_POSTGRES = (
    "EXCHANGE_TEST_POSTGRES_URL is not set; PostgreSQL tests need a server (.ci/run sets it)"
)


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
