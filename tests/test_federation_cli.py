"""The operator's federation commands, in-process (``typer``'s runner): peers, keys, pull."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from exchange.cli import app
from nodes import keys
from nodes.audit import reading
from nodes.directory import init_node
from nodes.identity import key_id, load_current, public_key_text
from nodes.node import Node
from nodes.settings import NodeSettings

runner = CliRunner()


@pytest.fixture
def node_dir(tmp_path: Path) -> Path:
    settings, _key = init_node(tmp_path / "xa", node_id="XA", name="Republic of XA")
    return settings.directory


def _key() -> tuple[str, str]:
    public = Ed25519PrivateKey.generate().public_key()
    return public_key_text(public), key_id(public)


def invoke(*args: str | Path) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    return result.exit_code, result.output


def test_add_list_revoke_remove(node_dir: Path) -> None:
    text, kid = _key()
    code, out = invoke(
        "peer", "add", node_dir, "--id", "XB", "--url", "http://xb.test", "--key", text
    )
    assert code == 0
    assert kid in out
    code, out = invoke("peer", "list", node_dir)
    assert code == 0
    assert "XB" in out
    assert kid in out
    assert "usable" in out

    code, out = invoke("peer", "revoke", node_dir, "XB", kid)
    assert code == 0
    code, out = invoke("peer", "list", node_dir)
    assert "revoked" in out

    code, out = invoke("peer", "remove", node_dir, "XB")
    assert code == 0
    code, out = invoke("peer", "list", node_dir)
    assert "XB" not in out
    code, out = invoke("peer", "list", node_dir, "--all")
    assert "XB" in out
    assert "peer removed" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--id", "XB", "--url", "http://xb.test", "--key", "not-a-key"), "43 characters"),
        (("--id", "XB", "--url", "http://xb.test"), "give --id, --url and --key"),
        (("--from-url", "http://xb.test"), "--fingerprint"),
        (("--id", "XB", "--url", "mailto:x", "--key", _key()[0]), "absolute http(s) URL"),
    ],
)
def test_add_explains_what_is_wrong(node_dir: Path, args: tuple[str, ...], message: str) -> None:
    code, out = invoke("peer", "add", node_dir, *args)
    assert code == 1
    assert message in " ".join(out.split())


def test_unknown_peer_is_named(node_dir: Path) -> None:
    code, out = invoke("peer", "remove", node_dir, "XZ")
    assert code == 1
    assert "no peer 'XZ'" in out
    code, out = invoke(
        "pull", node_dir, "--from", "XZ", "--schema", "weekly_epi@1", "--by", "area:adm1"
    )
    assert code == 1
    assert "no peer 'XZ'" in out


def test_pull_checks_its_arguments_before_asking(node_dir: Path) -> None:
    code, out = invoke(
        "pull", node_dir, "--from", "XB", "--schema", "weekly_epi@1", "--filter", "area"
    )
    assert code == 1
    assert "DIMENSION=VALUE" in out
    code, out = invoke(
        "pull", node_dir, "--from", "XB", "--schema", "weekly_epi@1", "--since", "last week"
    )
    assert code == 1
    assert "since" in out


def test_keys_rotate_is_audited_and_keeps_the_old_key(node_dir: Path) -> None:
    old = load_current(node_dir / "keys").kid
    code, out = invoke("keys", "rotate", node_dir, "--grace-hours", "2")
    assert code == 0, out
    new = load_current(node_dir / "keys").kid
    assert new != old
    assert new in out
    assert old in out
    ring = keys.key_ring(node_dir / "keys", now=datetime.now(UTC))
    assert [k.kid for k in ring] == [new, old]
    node = Node.open(NodeSettings.load(node_dir))
    try:
        assert node.key.kid == new
        logged = reading.entries(node.engine, limit=reading.MAX_PAGE).entries
        assert [e["resource"] for e in logged if e["action"] == "key.rotate"] == [f"key:{new}"]
    finally:
        node.close()
