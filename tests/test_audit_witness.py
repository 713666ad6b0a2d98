"""Witnessing: a peer that rolls back, rewrites or splits its history is caught and flagged."""

from __future__ import annotations

import datetime as dt
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from nodes.audit import anchor, checkpoint_store, reading, witness
from nodes.audit.checkpoint import sign_checkpoint
from nodes.audit.errors import InvalidCheckpointError, InvalidProofError, LogIntegrityError
from nodes.audit.merkle import MerkleTree, leaf_hash
from nodes.database import writing
from nodes.directory import init_node
from nodes.node import Node
from tests.audit_support import add_entries, bearer, stored_entries
from tests.conftest import now

T0 = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.UTC)


class PeerLog:
    """A peer's log in memory: leaves, its key, checkpoints and proofs on request."""

    def __init__(self, node_id: str = "XB", key: Ed25519PrivateKey | None = None) -> None:
        self.node_id = node_id
        self.key = key or Ed25519PrivateKey.generate()
        self.leaves: list[bytes] = []

    def grow(self, count: int, tag: str = "") -> PeerLog:
        start = len(self.leaves)
        self.leaves += [leaf_hash(f"{tag}{start + i}".encode()) for i in range(count)]
        return self

    def fork(self, size: int) -> PeerLog:
        """The same node, same key, with history diverging after ``size`` entries."""
        other = PeerLog(self.node_id, self.key)
        other.leaves = self.leaves[:size]
        return other

    def checkpoint(self, minutes: int) -> bytes:
        return sign_checkpoint(
            self.key,
            tree_size=len(self.leaves),
            root_hash=MerkleTree(self.leaves).root(),
            time=T0 + dt.timedelta(minutes=minutes),
            node_id=self.node_id,
        ).to_line()

    def proof(self, old: int) -> list[bytes]:
        return MerkleTree(self.leaves).consistency_proof(old)


def see(
    node: Node, peer: PeerLog, line: bytes, proof: list[bytes] | None = None
) -> witness.WitnessResult:
    with writing(node.engine) as conn:
        return witness.record_peer_checkpoint(
            conn,
            peer_id=peer.node_id,
            public_key=peer.key.public_key(),
            line=line,
            proof=proof,
            now=now(),
        )


def test_a_growing_consistent_peer_is_accepted(node: Node) -> None:
    peer = PeerLog().grow(5)
    assert see(node, peer, peer.checkpoint(0)).verdict == "first"
    peer.grow(7)
    assert see(node, peer, peer.checkpoint(1), peer.proof(5)).verdict == "consistent"
    assert see(node, peer, peer.checkpoint(2)).verdict == "unchanged"
    last = witness.last_accepted(node.engine, "XB")
    assert last is not None
    assert last.checkpoint.tree_size == 12
    assert witness.flagged_peers(node.engine) == []


def test_two_roots_for_one_size_are_a_split_view(node: Node) -> None:
    honest = PeerLog().grow(5)
    other = honest.fork(5)
    honest.grow(3, "a")
    other.grow(3, "b")
    see(node, honest, honest.checkpoint(0))
    result = see(node, other, other.checkpoint(1))
    assert result.flagged
    assert "two different roots signed for tree size 8" in result.reason


def test_a_rewritten_history_fails_the_consistency_proof(node: Node) -> None:
    original = PeerLog().grow(8)
    see(node, original, original.checkpoint(0))
    rewritten = original.fork(5).grow(7, "forged")
    result = see(node, rewritten, rewritten.checkpoint(1), rewritten.proof(8))
    assert result.flagged
    assert "does not extend the tree of size 8" in result.reason
    last = witness.last_accepted(node.engine, "XB")
    assert last is not None
    assert last.checkpoint.tree_size == 8


def test_a_smaller_tree_signed_later_is_a_rollback(node: Node) -> None:
    peer = PeerLog().grow(10)
    see(node, peer, peer.checkpoint(5))
    result = see(node, peer.fork(6), peer.fork(6).checkpoint(6))
    assert result.flagged
    assert "rolled back" in result.reason


def test_an_older_checkpoint_arriving_late_is_stale_not_a_flag(node: Node) -> None:
    peer = PeerLog().grow(6)
    early = peer.checkpoint(0)
    peer.grow(4)
    see(node, peer, peer.checkpoint(5))
    assert see(node, peer, early).verdict == "stale"
    assert see(node, peer, early, MerkleTree(peer.leaves).consistency_proof(6)).verdict == "stale"
    forked = peer.fork(3).grow(3, "x")
    late_forgery = forked.checkpoint(1)
    result = see(node, forked, late_forgery, MerkleTree(peer.leaves).consistency_proof(6))
    assert result.flagged


def test_a_grown_tree_without_a_proof_is_refused_and_not_recorded(node: Node) -> None:
    peer = PeerLog().grow(3)
    see(node, peer, peer.checkpoint(0))
    peer.grow(2)
    with pytest.raises(InvalidProofError, match="from 3 to 5"):
        see(node, peer, peer.checkpoint(1))
    last = witness.last_accepted(node.engine, "XB")
    assert last is not None
    assert last.checkpoint.tree_size == 3


def test_a_tree_grown_from_an_empty_one_needs_no_proof(node: Node) -> None:
    """A peer seen first with an empty log: every tree extends it (RFC 9162), so a grown
    checkpoint is accepted without a proof, which a peer never sends for size 0. Before,
    the witness refused it and never recorded that peer's checkpoints again."""
    peer = PeerLog()
    assert see(node, peer, peer.checkpoint(0)).verdict == "first"
    peer.grow(4)
    assert see(node, peer, peer.checkpoint(1)).verdict == "consistent"
    last = witness.last_accepted(node.engine, "XB")
    assert last is not None
    assert last.checkpoint.tree_size == 4
    liar = PeerLog("XC")  # signs "size 0" over a root that is not the empty tree's
    not_empty = sign_checkpoint(
        liar.key,
        tree_size=0,
        root_hash=MerkleTree([leaf_hash(b"x")]).root(),
        time=T0,
        node_id="XC",
    ).to_line()
    see(node, liar, not_empty)
    liar.grow(2)
    assert see(node, liar, liar.checkpoint(1)).flagged


def test_lines_that_are_not_the_peers_signature_are_refused_not_flagged(node: Node) -> None:
    peer = PeerLog().grow(3)
    impostor = PeerLog(key=Ed25519PrivateKey.generate()).grow(3)
    with pytest.raises(InvalidCheckpointError, match="signature"):
        see(node, peer, impostor.checkpoint(0))
    other_node = PeerLog("XC", peer.key).grow(3)
    with pytest.raises(InvalidCheckpointError, match="not peer 'XB'"):
        see(node, peer, other_node.checkpoint(0))
    with pytest.raises(InvalidCheckpointError):
        see(node, peer, b'{"checkpoint":garbage}')
    assert witness.last_accepted(node.engine, "XB") is None
    assert witness.flagged_peers(node.engine) == []


def test_a_flag_is_logged_kept_as_evidence_and_shown_in_readyz(
    node: Node, client: TestClient
) -> None:
    peer = PeerLog().grow(4)
    see(node, peer, peer.checkpoint(0))
    forged = peer.fork(4)
    forged.leaves[1] = leaf_hash(b"rewritten")
    bad_line = forged.checkpoint(1)
    see(node, forged, bad_line)
    peer.grow(2)
    assert see(node, peer, peer.checkpoint(2), peer.proof(4)).verdict == "consistent"
    (flagged,) = witness.flagged_peers(node.engine)
    assert flagged.peer_id == "XB"
    assert flagged.flags == 1
    assert flagged.evidence == bad_line
    entry = stored_entries(node.engine)[-1]
    assert (entry["action"], entry["actor"], entry["outcome"]) == (
        "peer.flagged",
        "partner:XB",
        "flagged",
    )
    operator = bearer(node.engine, name="ops", role="operator")  # details are for operators
    details = client.get("/readyz", headers=operator).json()["details"]["audit"]
    assert [p["peer_id"] for p in details["flagged_peers"]] == ["XB"]


def _backup(source: Path, target: Path) -> None:
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)


def test_a_database_restored_from_before_a_checkpoint_a_peer_holds_is_caught(
    tmp_path: Path,
) -> None:
    """Node XA restores an old backup: its anchor refuses it; an operator who moves the anchor
    aside gets a node that starts, but witness XW, which holds a later checkpoint, flags it."""
    a_settings, _ = init_node(tmp_path / "a", node_id="XA", name="A")
    w_settings, _ = init_node(tmp_path / "w", node_id="XW", name="Witness")
    a, w = Node.open(a_settings), Node.open(w_settings)
    public_key = a.key.public_key

    def show(proof_from: int | None) -> witness.WitnessResult:
        line = checkpoint_store.sign(a.engine, a.key.private_key, now=now()).to_line()
        proof = None
        if proof_from is not None:
            proof = reading.consistency(a.engine, first=proof_from).proof
        with writing(w.engine) as conn:
            return witness.record_peer_checkpoint(
                conn, peer_id="XA", public_key=public_key, line=line, proof=proof, now=now()
            )

    add_entries(a.engine, 5)
    assert show(None).verdict == "first"
    database = Path(a_settings.database.removeprefix("sqlite:///"))
    _backup(database, tmp_path / "backup.sqlite3")
    add_entries(a.engine, 5, tag="later")
    assert show(5).verdict == "consistent"  # the witness now holds XA's checkpoint of 10

    a.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(tmp_path / "backup.sqlite3", database)
    with pytest.raises(LogIntegrityError, match="rolled back"):
        Node.open(a_settings)  # the anchor outside the database remembers size 10
    anchor.path_in(a_settings.keys_dir).rename(tmp_path / "anchor-aside.json")
    a = Node.open(a_settings)  # adopted as it stands: only the witness can tell now
    add_entries(a.engine, 7, tag="after-restore")
    result = show(10)
    assert result.flagged
    assert "does not extend the tree of size 10" in result.reason
    a.close()
    a = Node.open(a_settings)
    assert witness.flagged_peers(w.engine)[0].peer_id == "XA"
    a.close()
    w.close()


def test_a_restored_database_that_has_not_caught_up_is_a_rollback(tmp_path: Path) -> None:
    a_settings, _ = init_node(tmp_path / "a", node_id="XA", name="A")
    w_settings, _ = init_node(tmp_path / "w", node_id="XW", name="Witness")
    a, w = Node.open(a_settings), Node.open(w_settings)
    database = Path(a_settings.database.removeprefix("sqlite:///"))
    add_entries(a.engine, 3)
    _backup(database, tmp_path / "backup.sqlite3")
    add_entries(a.engine, 6)
    held = checkpoint_store.sign(a.engine, a.key.private_key, now=now()).to_line()
    a.close()
    shutil.copyfile(tmp_path / "backup.sqlite3", database)
    for suffix in ("-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    with pytest.raises(LogIntegrityError, match=r"entries seq 3\.\.8 are gone"):
        Node.open(a_settings)
    anchor.path_in(a_settings.keys_dir).unlink()
    a = Node.open(a_settings)
    later = checkpoint_store.sign(a.engine, a.key.private_key, now=now() + dt.timedelta(seconds=1))
    with writing(w.engine) as conn:
        key = a.key.public_key
        first = witness.record_peer_checkpoint(
            conn, peer_id="XA", public_key=key, line=held, proof=None, now=now()
        )
        rolled = witness.record_peer_checkpoint(
            conn, peer_id="XA", public_key=key, line=later.to_line(), proof=None, now=now()
        )
    assert first.verdict == "first"
    assert rolled.flagged
    assert "rolled back: tree size 4 signed after tree size 9" in rolled.reason
    a.close()
    w.close()


def test_peer_list_shows_a_flagged_peer(node: Node) -> None:
    from typer.testing import CliRunner

    from exchange.cli import app
    from nodes import peers
    from nodes.identity import public_key_text

    peer = PeerLog().grow(4)
    peers.add_peer(
        node.engine,
        peer_id="XB",
        name="Federation of XB",
        url="http://xb.test",
        keys=[peers.NewKey(public_key_text(peer.key.public_key()))],
        now=now(),
    )
    runner = CliRunner()
    before = runner.invoke(app, ["peer", "list", str(node.settings.directory)])
    assert before.exit_code == 0
    assert "no flag" in before.output
    assert "FLAGGED" not in before.output
    see(node, peer, peer.checkpoint(0))
    see(node, peer.fork(2), peer.fork(2).checkpoint(5))  # rolled back
    after = runner.invoke(app, ["peer", "list", str(node.settings.directory)])
    assert after.exit_code == 0
    assert "FLAGGED" in after.output
    assert "rolled back" in after.output
