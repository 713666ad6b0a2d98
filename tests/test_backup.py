"""Issue 9: backups taken online, and restores that give back no spent budget and do not look
like a rollback to the partners that witness the log."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from exchange.cli import app
from nodes import backup, ledger
from nodes.audit import anchor, checkpoint_store, reading, witness
from nodes.audit import export as log_export
from nodes.audit.errors import LogIntegrityError
from nodes.database import writing
from nodes.directory import init_node
from nodes.ledger import InsufficientBudgetError
from nodes.node import Node
from nodes.settings import NodeSettings
from policies.accounts import Charge
from tests.audit_support import add_entries, stored_entries
from tests.conftest import now

CHARGE = Charge(
    scope="partner", partner_id="XB", schema_id="weekly_epi@1", period="2026", cap_micro=1000
)


def export_to(node: Node, path: Path) -> Path:
    final = log_export.prepare(
        node.engine, node.key.private_key, actor="operator", role="operator", now=now()
    )
    keys = log_export.key_lines(node.settings.keys_dir, node_id=node.settings.node_id)
    path.write_bytes(b"".join(log_export.stream(node.engine, final, keys)))
    return path


def spend(node: Node, micro: int) -> None:
    with writing(node.engine) as conn:
        ledger.reserve(conn, [CHARGE], micro, now())


def spent(node: Node) -> int:
    with node.engine.connect() as conn:
        return ledger.lines(conn, [CHARGE])[0].spent_micro


def test_a_backup_taken_while_the_node_writes_restores_to_a_node_that_starts(
    settings: NodeSettings, tmp_path: Path
) -> None:
    node = Node.open(settings)
    add_entries(node.engine, 3)
    writer = threading.Thread(target=add_entries, args=(node.engine, 40), kwargs={"tag": "w"})
    writer.start()
    manifest = backup.take(settings, tmp_path / "b", actor="operator", now=now())
    writer.join()
    assert manifest["log_size"] >= 4
    assert (tmp_path / "b" / "keys").stat().st_mode & 0o077 == 0
    assert not (tmp_path / "b" / "keys" / anchor.ANCHOR_FILE).exists()
    for key in (tmp_path / "b" / "keys").glob("*.pem"):
        assert key.stat().st_mode & 0o077 == 0
    export = export_to(node, tmp_path / "newest.jsonl")
    before = len(stored_entries(node.engine))
    node.close()
    done = backup.restore(tmp_path / "b", settings, export=export, actor="operator", now=now())
    assert not done.missing
    assert done.log_size == before
    # SQLite: the manifest names exactly what the copy holds; PostgreSQL: at least that.
    assert 0 < done.appended <= before - manifest["log_size"]
    reopened = Node.open(settings)
    actions = [e["action"] for e in stored_entries(reopened.engine)]
    assert actions.count("node.backup") == 1
    assert actions[-1] == "node.restore"
    reopened.close()


def test_a_restore_without_an_export_refuses_to_start_and_says_what_is_missing(
    settings: NodeSettings, tmp_path: Path
) -> None:
    node = Node.open(settings)
    backup.take(settings, tmp_path / "b", actor="operator", now=now())
    add_entries(node.engine, 5)
    signed = checkpoint_store.sign(node.engine, node.key.private_key, now=now())
    node.close()
    done = backup.restore(tmp_path / "b", settings, export=None, actor="operator", now=now())
    assert f"..{signed.checkpoint.tree_size - 1} are missing" in done.missing
    with pytest.raises(LogIntegrityError, match="exchange restore BACKUP DIR --export"):
        Node.open(settings)


def test_budget_spent_after_the_backup_is_never_given_back(
    settings: NodeSettings, tmp_path: Path
) -> None:
    node = Node.open(settings)
    spend(node, 300)
    backup.take(settings, tmp_path / "b", actor="operator", now=now())
    spend(node, 500)  # after the backup: the backup says 300
    export = export_to(node, tmp_path / "newest.jsonl")  # signs: the anchor holds 800
    node.close()
    done = backup.restore(tmp_path / "b", settings, export=export, actor="operator", now=now())
    assert [(b, a) for _what, b, a in done.raised] == [(300, 800)]
    node = Node.open(settings)
    assert spent(node) == 800
    with pytest.raises(InsufficientBudgetError):
        spend(node, 201)  # 800 + 201 > 1000: only what was left before the restore is left
    spend(node, 200)
    reasons = [e["reason"] for e in stored_entries(node.engine) if e["action"] == "node.restore"]
    assert "raised from 300 to 800" in reasons[0]
    node.close()


def test_a_restored_node_is_not_a_rollback_to_its_witness(tmp_path: Path) -> None:
    a_settings, _ = init_node(tmp_path / "a", node_id="XA", name="A")
    w_settings, _ = init_node(tmp_path / "w", node_id="XW", name="Witness")
    a, w = Node.open(a_settings), Node.open(w_settings)
    public_key = a.key.public_key

    def show(node: Node, proof_from: int | None) -> witness.WitnessResult:
        line = checkpoint_store.sign(node.engine, node.key.private_key, now=now()).to_line()
        proof = (
            None if proof_from is None else reading.consistency(node.engine, first=proof_from).proof
        )
        with writing(w.engine) as conn:
            return witness.record_peer_checkpoint(
                conn, peer_id="XA", public_key=public_key, line=line, proof=proof, now=now()
            )

    add_entries(a.engine, 5)
    first = show(a, None)
    backup.take(a_settings, tmp_path / "b", actor="operator", now=now())
    add_entries(a.engine, 5, tag="later")
    seen = checkpoint_store.latest_checkpoint(a.engine)
    assert seen is not None
    assert show(a, seen.checkpoint.tree_size).verdict == "consistent"
    witnessed = checkpoint_store.latest_checkpoint(a.engine)
    assert witnessed is not None
    assert first.verdict == "first"
    export = export_to(a, tmp_path / "newest.jsonl")
    a.close()
    backup.restore(tmp_path / "b", a_settings, export=export, actor="operator", now=now())
    a = Node.open(a_settings)
    add_entries(a.engine, 2, tag="after")
    result = show(a, witnessed.checkpoint.tree_size)
    assert not result.flagged
    assert result.verdict == "consistent"
    a.close()
    w.close()


def test_a_tampered_backup_export_or_anchored_ledger_is_refused(
    settings: NodeSettings, tmp_path: Path
) -> None:
    node = Node.open(settings)
    spend(node, 100)
    backup.take(settings, tmp_path / "b", actor="operator", now=now())
    add_entries(node.engine, 3)
    export = export_to(node, tmp_path / "newest.jsonl")
    node.close()
    tampered = tmp_path / "t"
    shutil.copytree(tmp_path / "b", tampered)
    (tampered / "node.toml").write_text((tampered / "node.toml").read_text() + "\n# edited\n")
    with pytest.raises(backup.BackupError, match="do not match its signed manifest"):
        backup.restore(tampered, settings, export=export, actor="operator", now=now())
    lines = export.read_bytes().split(b"\n")
    lines[3] = lines[3].replace(b"filler", b"fuller")
    bad_export = tmp_path / "bad.jsonl"
    bad_export.write_bytes(b"\n".join(lines))
    with pytest.raises(backup.BackupError, match="does not verify"):
        backup.restore(tmp_path / "b", settings, export=bad_export, actor="operator", now=now())
    path = anchor.path_in(settings.keys_dir)
    held = json.loads(path.read_text())
    held["ledger"]["accounts"][0][4] = 0  # claim nothing was spent
    path.write_text(json.dumps(held))
    with pytest.raises(LogIntegrityError, match="does not verify"):
        backup.restore(tmp_path / "b", settings, export=export, actor="operator", now=now())


def test_the_cli_backs_up_and_restores(settings: NodeSettings, tmp_path: Path) -> None:
    runner = CliRunner()
    Node.open(settings).close()
    out = tmp_path / "cli-backup"
    taken = runner.invoke(app, ["backup", str(settings.directory), str(out)])
    assert taken.exit_code == 0, taken.output
    again = runner.invoke(app, ["backup", str(settings.directory), str(out)])
    assert again.exit_code == 1
    assert "already exists" in again.output
    restored = runner.invoke(app, ["restore", str(out), str(settings.directory)])
    assert restored.exit_code == 0, restored.output
    node = Node.open(settings)
    restores = [e for e in stored_entries(node.engine) if e["action"] == "node.restore"]
    assert len(restores) == 1
    assert "must be pushed again" in restores[0]["reason"]
    node.close()
