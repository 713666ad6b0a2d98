"""Token lifetimes: expiry, last use (written at most once a minute) and rotation with grace."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from exchange.cli import app as cli
from exchange.cli.common import console
from nodes import migrate, policy_loads, tokens
from nodes.database import make_engine
from nodes.node import Node
from schemas.errors import ConflictError, InvalidInputError
from tests.audit_support import stored_entries

T0 = dt.datetime(2026, 3, 16, 12, 0, tzinfo=dt.UTC)
runner = CliRunner()


@pytest.mark.parametrize(
    ("text", "span"),
    [
        ("12h", dt.timedelta(hours=12)),
        ("90d", dt.timedelta(days=90)),
        ("2W", dt.timedelta(weeks=2)),
    ],
)
def test_durations_read_as_operators_write_them(text: str, span: dt.timedelta) -> None:
    assert tokens.parse_duration(text) == span


@pytest.mark.parametrize("text", ["", "90", "d", "1.5d", "-3d", "3 days", "90y", "0d", "99999w"])
def test_nonsense_durations_are_refused_clearly(text: str) -> None:
    with pytest.raises(InvalidInputError, match=r"duration|ten years|no time"):
        tokens.parse_duration(text)


def test_a_grace_period_may_be_zero() -> None:
    assert tokens.parse_duration("0", allow_zero=True) == dt.timedelta(0)
    assert tokens.parse_duration("0d", allow_zero=True) == dt.timedelta(0)


def test_an_expired_token_is_refused_with_a_401_and_audited(client: TestClient, node: Node) -> None:
    now = dt.datetime.now(dt.UTC)
    _record, secret = tokens.issue_token(
        node.engine,
        name="auditor-old",
        role="auditor",
        schemas=(),
        now=now - dt.timedelta(days=3),
        lifetime=dt.timedelta(days=2),
    )
    response = client.get("/v1/audit/checkpoint", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert "expired" in response.json()["detail"]
    failed = [e for e in stored_entries(node.engine) if e["action"] == "auth.failed"]
    assert failed[-1]["actor"] == "token:auditor-old"
    assert "expired" in failed[-1]["reason"]


def test_a_token_works_until_it_expires(node: Node) -> None:
    record, secret = tokens.issue_token(
        node.engine, name="a", role="auditor", schemas=(), now=T0, lifetime=dt.timedelta(hours=12)
    )
    assert record.expires_at == T0 + dt.timedelta(hours=12)
    assert tokens.authenticate(node.engine, secret, now=T0 + dt.timedelta(hours=11)).name == "a"
    with pytest.raises(tokens.ExpiredTokenError) as caught:
        tokens.authenticate(node.engine, secret, now=T0 + dt.timedelta(hours=12))
    assert caught.value.token is not None
    assert caught.value.token.name == "a"


def test_last_use_is_written_at_most_once_a_minute(node: Node) -> None:
    _record, secret = tokens.issue_token(node.engine, name="a", role="auditor", schemas=(), now=T0)
    assert tokens.list_all(node.engine)[0].last_used_at is None
    tokens.authenticate(node.engine, secret, now=T0)
    tokens.authenticate(node.engine, secret, now=T0 + dt.timedelta(seconds=30))
    assert tokens.list_all(node.engine)[0].last_used_at == T0
    tokens.authenticate(node.engine, secret, now=T0 + dt.timedelta(seconds=61))
    assert tokens.list_all(node.engine)[0].last_used_at == T0 + dt.timedelta(seconds=61)


def test_a_rotated_secret_works_through_its_grace_period_only(node: Node) -> None:
    _record, old = tokens.issue_token(
        node.engine, name="moh", role="agency", schemas=("weekly_epi@1",), now=T0
    )
    rotated, new = tokens.rotate_token(
        node.engine, name="moh", grace=dt.timedelta(days=7), now=T0, actor="operator:ops"
    )
    assert new != old
    assert rotated.schemas == ("weekly_epi@1",)
    assert rotated.role == "agency"
    assert rotated.previous_expires_at == T0 + dt.timedelta(days=7)
    for secret in (old, new):
        assert tokens.authenticate(node.engine, secret, now=T0 + dt.timedelta(days=6)).name == "moh"
    with pytest.raises(tokens.ExpiredTokenError, match="rotation"):
        tokens.authenticate(node.engine, old, now=T0 + dt.timedelta(days=7))
    assert tokens.authenticate(node.engine, new, now=T0 + dt.timedelta(days=8)).name == "moh"
    (entry,) = [e for e in stored_entries(node.engine) if e["action"] == "token.rotate"]
    assert entry["actor"] == "operator:ops"
    assert "7 day(s)" in entry["reason"]
    assert old not in json.dumps(entry)
    assert new not in json.dumps(entry)


def test_a_rotation_without_grace_ends_the_old_secret_at_once(node: Node) -> None:
    _record, old = tokens.issue_token(node.engine, name="a", role="auditor", schemas=(), now=T0)
    _rotated, new = tokens.rotate_token(node.engine, name="a", grace=dt.timedelta(0), now=T0)
    with pytest.raises(tokens.ExpiredTokenError):
        tokens.authenticate(node.engine, old, now=T0)
    _again, newest = tokens.rotate_token(node.engine, name="a", grace=dt.timedelta(days=1), now=T0)
    with pytest.raises(tokens.UnknownTokenError):  # one previous secret at a time
        tokens.authenticate(node.engine, old, now=T0)
    assert tokens.authenticate(node.engine, new, now=T0).name == "a"
    assert tokens.authenticate(node.engine, newest, now=T0).name == "a"


def test_revoked_tokens_and_unknown_names_cannot_be_rotated(node: Node) -> None:
    tokens.issue_token(node.engine, name="a", role="auditor", schemas=(), now=T0)
    tokens.revoke_token(node.engine, name="a", now=T0)
    with pytest.raises(ConflictError, match="revoked"):
        tokens.rotate_token(node.engine, name="a", grace=dt.timedelta(0), now=T0)
    with pytest.raises(Exception, match="no token named"):
        tokens.rotate_token(node.engine, name="nobody", grace=dt.timedelta(0), now=T0)


def test_the_cli_creates_expiring_tokens_rotates_them_and_lists_their_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(console, "width", 200)
    directory = str(tmp_path / "xa")
    assert runner.invoke(cli, ["init", directory, "--node-id", "XA", "--name", "XA"]).exit_code == 0
    made = runner.invoke(
        cli,
        ["token", "create", directory, "--name", "audit", "--role", "auditor", "--expires", "90d"],
    )
    assert made.exit_code == 0, made.output
    assert "expires" in made.output
    nonsense = runner.invoke(
        cli, ["token", "create", directory, "--name", "x", "--role", "auditor", "--expires", "soon"]
    )
    assert nonsense.exit_code == 1
    assert "12h, 90d or 2w" in nonsense.output
    rotated = runner.invoke(cli, ["token", "rotate", directory, "audit", "--grace", "7d"])
    assert rotated.exit_code == 0, rotated.output
    old = re.search(r"xt_\S+", made.output)
    new = re.search(r"xt_\S+", rotated.output)
    assert old
    assert new
    assert old.group() != new.group()
    (listed,) = json.loads(runner.invoke(cli, ["token", "list", directory, "--json"]).output)
    created = dt.datetime.fromisoformat(listed["created_at"])
    assert dt.datetime.fromisoformat(listed["expires_at"]) - created == dt.timedelta(days=90)
    assert listed["state"] == "active"
    assert listed["rotated_at"]
    valid_until = dt.datetime.fromisoformat(listed["previous_secret_valid_until"])
    assert valid_until - dt.datetime.fromisoformat(listed["rotated_at"]) == dt.timedelta(days=7)
    assert listed["last_used_at"] is None
    table = runner.invoke(cli, ["token", "list", directory]).output
    assert "old secret valid until" in table
    assert "never" in table


def test_migration_0007_keeps_existing_tokens_and_policies(database_url: str) -> None:
    """Tokens issued before 0007 keep working (no expiry); an old policy row has no text."""
    engine = make_engine(database_url)
    try:
        migrate.upgrade(engine, "0006")
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO tokens (name, role, schemas, secret_sha256, created_at) "
                    "VALUES ('old', 'auditor', '[]', :h, :t)"
                ),
                {"h": tokens.secret_hash("xt_old"), "t": T0},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO policy_loads (policy_hash, source, loaded_at) "
                    "VALUES ('sha256:00', 'policy.yaml', :t)"
                ),
                {"t": T0},
            )
        migrate.upgrade(engine, "0007")
        record = tokens.authenticate(engine, "xt_old", now=T0 + dt.timedelta(days=999))
        assert record.name == "old"
        assert record.expires_at is None
        assert tokens.list_all(engine)[0].last_used_at == T0 + dt.timedelta(days=999)
        stored = policy_loads.active(engine)
        assert stored is not None
        assert stored.document is None
        assert stored.hash == "sha256:00"
        with engine.begin() as conn:
            config = migrate._config()
            config.attributes["connection"] = conn
            command.downgrade(config, "0006")
        assert migrate.current_revision(engine) == "0006"
    finally:
        engine.dispose()
