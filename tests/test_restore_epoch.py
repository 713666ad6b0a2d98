"""A restore that lost entries for good declares a new epoch, signed; witnesses see a declared
gap, not a silent rollback. Signatures and Merkle roots are checked here with
``cryptography`` and ``hashlib`` directly, not with the code under test."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from exchange.api.app import create_app
from exchange.cli import app
from exchange.signing import witnessing
from nodes import backup, ledger
from nodes.audit import anchor, checkpoint_store, epoch, status, verifier, witness
from nodes.audit.checkpoint import SignedCheckpoint, sign_checkpoint
from nodes.database import writing
from nodes.directory import init_node
from nodes.node import Node
from nodes.settings import NodeSettings
from tests.audit_support import add_entries, bearer, stored_bytes, stored_entries
from tests.conftest import now
from tests.test_backup import CHARGE, export_to, spend, spent


def mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 Merkle tree hash of leaf hashes, written out independently."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:])).digest()


def leaves_of(entries: list[bytes]) -> list[bytes]:
    return [hashlib.sha256(b"\x00" + e).digest() for e in entries]


def check_signed(public_key: Ed25519PublicKey, served: dict[str, Any]) -> dict[str, Any]:
    """The statement's fields once its signature verifies over the exact bytes served."""
    body = served["statement"].encode()
    public_key.verify(base64.b64decode(served["signature"]), body)  # raises if forged
    fields: dict[str, Any] = json.loads(body)
    assert rfc8785.dumps(fields) == body  # canonical: what was signed is what is read
    return fields


def test_a_restore_without_an_export_starts_a_signed_new_epoch(
    settings: NodeSettings, tmp_path: Path
) -> None:
    node = Node.open(settings)
    spend(node, 300)
    backup.take(settings, tmp_path / "b", actor="operator", now=now())
    restored_entries = stored_bytes(node.engine)  # SQLite: the backup holds exactly these
    add_entries(node.engine, 5)
    spend(node, 200)
    abandoned = checkpoint_store.sign(node.engine, node.key.private_key, now=now())
    public_key = node.key.public_key
    node.close()

    refused = backup.restore(tmp_path / "b", settings, export=None, actor="operator", now=now())
    assert "--new-epoch" in refused.missing
    done = backup.restore(
        tmp_path / "b", settings, export=None, actor="operator", now=now(), new_epoch=True
    )
    assert not done.missing
    assert done.epoch is not None
    assert [(b, a) for _what, b, a in done.raised] == [(300, 500)]  # budget is not lost

    fields = check_signed(public_key, done.epoch.to_json())
    restored = len(restored_entries)
    if settings.database.startswith("sqlite"):
        assert fields["restored_tree_size"] == restored
        assert fields["restored_root_hash"] == mth(leaves_of(restored_entries)).hex()
    c = abandoned.checkpoint
    assert fields["node_id"] == "XA"
    assert (fields["abandoned_tree_size"], fields["abandoned_root_hash"]) == (
        c.tree_size,
        c.root_hash,
    )
    assert fields["abandoned_time"] == c.time.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert fields["entries_lost"] == c.tree_size - fields["restored_tree_size"] > 0
    served = epoch.read_all(settings.keys_dir)
    assert [s.to_json() for s in served] == [done.epoch.to_json()]

    node = Node.open(settings)  # starts: the anchor now holds the new epoch's checkpoint
    assert spent(node) == 500
    auditor = bearer(node.engine, name="aud", role="auditor")
    with TestClient(create_app(settings, node=node)) as client:
        answer = client.get("/v1/audit/checkpoint", headers=auditor).json()
    [shown] = answer["epochs"]
    assert check_signed(public_key, shown) == fields
    assert shown["entries_lost"] > 0
    entries = stored_entries(node.engine)
    seq = fields["restored_tree_size"]
    assert entries[seq]["action"] == "audit.epoch"
    assert done.epoch.digest in entries[seq]["reason"]
    assert hashlib.sha256(done.epoch.body).hexdigest() in entries[seq]["reason"]
    restore = [e for e in entries if e["action"] == "node.restore"]
    assert restore[0]["seq"] == seq + 1
    assert "new epoch" in restore[0]["reason"]
    add_entries(node.engine, 2, tag="after")
    export = export_to(node, tmp_path / "after.jsonl")
    result = verifier.verify_export_file(export, public_key, None)
    assert result.epochs == (seq,)
    assert "NEW EPOCH declared at entry seq" in result.summary()
    with pytest.raises(verifier.VerificationError):  # an auditor who kept the lost one sees it
        verifier.verify_export_file(export, public_key, abandoned.to_line())
    node.close()


def test_the_cli_declares_a_new_epoch(settings: NodeSettings, tmp_path: Path) -> None:
    node = Node.open(settings)
    backup.take(settings, tmp_path / "b", actor="operator", now=now())
    add_entries(node.engine, 3)
    checkpoint_store.sign(node.engine, node.key.private_key, now=now())
    node.close()
    runner = CliRunner()
    directory = str(settings.directory)
    refused = runner.invoke(app, ["restore", str(tmp_path / "b"), directory])
    assert refused.exit_code == 1
    assert "--new-epoch" in refused.output
    done = runner.invoke(app, ["restore", str(tmp_path / "b"), directory, "--new-epoch"])
    assert done.exit_code == 0, done.output
    assert "New epoch of the audit log" in done.output
    assert "lost for good" in done.output
    Node.open(settings).close()


# Witnesses: node XA restores and declares a new epoch; its witnesses held the lost checkpoint.


def see(
    w: Node, public_key: Ed25519PublicKey, document: dict[str, Any], *, proof_from: int | None
) -> witness.WitnessResult:
    proof = document["consistency_proof"]
    hashes = None
    if proof is not None and proof["from"] == proof_from:
        hashes = [bytes.fromhex(h) for h in proof["proof"]]
    with writing(w.engine) as conn:
        return witness.record_peer_checkpoint(
            conn,
            peer_id="XA",
            public_key=public_key,
            line=document["checkpoint"].encode(),
            proof=hashes,
            now=now(),
            epochs=witnessing.served_epochs(document),
        )


def held_by(w: Node, public_key: Ed25519PublicKey, line: bytes) -> None:
    with writing(w.engine) as conn:
        witness.record_peer_checkpoint(
            conn, peer_id="XA", public_key=public_key, line=line, proof=None, now=now()
        )


def restored_with_epoch(tmp_path: Path) -> tuple[Node, SignedCheckpoint, Ed25519PublicKey]:
    """Node XA after a restore with a new epoch; returns it, the checkpoint it lost, its key."""
    settings, _ = init_node(tmp_path / "a", node_id="XA", name="A")
    a = Node.open(settings)
    add_entries(a.engine, 4)
    backup.take(settings, tmp_path / "b", actor="operator", now=now())
    add_entries(a.engine, 6, tag="lost")
    lost = checkpoint_store.sign(a.engine, a.key.private_key, now=now())
    public_key = a.key.public_key
    a.close()
    backup.restore(
        tmp_path / "b", settings, export=None, actor="operator", now=now(), new_epoch=True
    )
    return Node.open(settings), lost, public_key


def witness_node(tmp_path: Path, name: str) -> Node:
    settings, _ = init_node(tmp_path / name, node_id="XW", name="Witness")
    return Node.open(settings)


def test_a_witness_that_held_the_lost_checkpoint_accepts_the_declared_gap(
    tmp_path: Path,
) -> None:
    a, lost, public_key = restored_with_epoch(tmp_path)
    w = witness_node(tmp_path, "w")
    held_by(w, public_key, lost.to_line())
    held = lost.checkpoint.tree_size
    document = witnessing.checkpoint_document(a, held)
    served = document["epochs"]
    assert len(served) == 1
    fields = check_signed(public_key, served[0])
    assert fields["abandoned_tree_size"] == held

    result = see(w, public_key, document, proof_from=held)
    assert result.verdict == "epoch"
    assert not result.flagged
    assert witness.flagged_peers(w.engine) == []
    [gap] = witness.declared_epochs(w.engine)
    assert gap.peer_id == "XA"
    assert f"({fields['entries_lost']}) were lost" in gap.reason
    shown = status.summary(w.engine, now=now())["peer_epochs"]
    assert shown[0]["peer_id"] == "XA"
    assert "new epoch declared" in shown[0]["reason"]
    recorded = [e for e in stored_entries(w.engine) if e["action"] == "peer.epoch"]
    assert len(recorded) == 1
    assert recorded[0]["partner"] == "XA"
    listed = CliRunner().invoke(app, ["peer", "list", str(tmp_path / "w")], env={"COLUMNS": "200"})
    assert listed.exit_code == 0
    assert "peer XA declared a new epoch" in listed.output

    add_entries(a.engine, 3, tag="next")  # the new epoch grows: witnessed as usual from here
    checkpoint_store.sign(a.engine, a.key.private_key, now=now())
    since = witness.last_accepted(w.engine, "XA")
    assert since is not None
    assert since.checkpoint.tree_size < held
    document = witnessing.checkpoint_document(a, since.checkpoint.tree_size)
    later = see(w, public_key, document, proof_from=since.checkpoint.tree_size)
    assert later.verdict == "consistent"
    a.close()
    w.close()


def _other_checkpoint(lost: SignedCheckpoint, key: Ed25519PrivateKey) -> SignedCheckpoint:
    c = lost.checkpoint
    return sign_checkpoint(
        key,
        tree_size=c.tree_size + 1,
        root_hash=bytes.fromhex(c.root_hash),
        time=c.time,
        node_id=c.node_id,
        key_id=c.key_id,
    )


def test_without_a_valid_statement_naming_the_held_checkpoint_the_peer_is_flagged(
    tmp_path: Path,
) -> None:
    a, lost, public_key = restored_with_epoch(tmp_path)
    held = lost.checkpoint.tree_size
    genuine = witnessing.checkpoint_document(a, held)
    [served] = genuine["epochs"]
    stranger = Ed25519PrivateKey.generate()
    body = served["statement"].encode()
    fields = json.loads(body)
    other = rfc8785.dumps(
        {**fields, "abandoned_tree_size": held + 1, "entries_lost": fields["entries_lost"] + 1}
    )
    a_key = a.key.private_key
    cases: dict[str, list[dict[str, Any]] | None] = {
        "no statement": None,
        "signed by another key": [
            {**served, "signature": base64.b64encode(stranger.sign(body)).decode()}
        ],
        "names another checkpoint": [
            {**served, "statement": other.decode(), "signature": _b64(a_key.sign(other))}
        ],
        "tampered after signing": [
            {**served, "statement": served["statement"].replace('"time":"', '"time":"1')}
        ],
        "no proof it goes on from the restored tree": [{**served, "consistency_proof": []}],
    }
    for i, (case, epochs) in enumerate(cases.items()):
        w = witness_node(tmp_path, f"w{i}")
        held_by(w, public_key, lost.to_line())
        document = {k: v for k, v in genuine.items() if k != "epochs"}
        if epochs is not None:
            document["epochs"] = epochs
        result = see(w, public_key, document, proof_from=held)
        assert result.flagged, case
        assert witness.declared_epochs(w.engine) == [], case
        assert [p.peer_id for p in witness.flagged_peers(w.engine)] == ["XA"], case
        w.close()
    # and a statement naming a checkpoint the witness does not hold is no excuse either
    w = witness_node(tmp_path, "w-other")
    held_by(w, public_key, _other_checkpoint(lost, a_key).to_line())
    assert see(w, public_key, genuine, proof_from=held).flagged
    w.close()
    a.close()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_the_anchor_keeps_the_budget_after_a_new_epoch(tmp_path: Path) -> None:
    settings, _ = init_node(tmp_path / "a", node_id="XA", name="A")
    a = Node.open(settings)
    spend(a, 100)
    backup.take(settings, tmp_path / "b", actor="operator", now=now())
    spend(a, 400)
    checkpoint_store.sign(a.engine, a.key.private_key, now=now())
    a.close()
    backup.restore(
        tmp_path / "b", settings, export=None, actor="operator", now=now(), new_epoch=True
    )
    accounts = anchor.read_ledger(anchor.path_in(settings.keys_dir), a.key.public_key)
    assert accounts is not None
    assert [a_[4] for a_ in accounts if a_[1] == CHARGE.partner_id] == [500]
    a = Node.open(settings)
    with a.engine.connect() as conn:
        assert ledger.lines(conn, [CHARGE])[0].spent_micro == 500
    a.close()
