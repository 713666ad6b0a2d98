"""Issue 8 items 10-12: the log's anchor outside the database, start-up checks of every
audit table, and refusals that name exactly what changed."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from sqlalchemy import delete, insert, update

from nodes import ledger
from nodes.audit import anchor, checkpoint_store
from nodes.audit.entry import encode_entry
from nodes.audit.errors import LogIntegrityError
from nodes.audit.merkle import leaf_hash
from nodes.audit.tables import (
    audit_checkpoints,
    audit_entries,
    audit_head,
    audit_lookup,
    audit_nodes,
)
from nodes.database import writing
from nodes.directory import init_node
from nodes.node import Node
from nodes.settings import NodeSettings
from policies.accounts import Charge
from tests.audit_support import add_entries, stored_bytes, stored_entries
from tests.conftest import now


@pytest.fixture
def signed(node: Node) -> Node:
    """A node with 12 entries (the opening checkpoint's empty tree, then these) all signed."""
    add_entries(node.engine, 12)
    checkpoint_store.sign(node.engine, node.key.private_key, now=now())
    return node


def rechain(node: Node, start: int, *, stop: int | None = None) -> None:
    """Rewrite entry ``start``, re-chain every entry after it (up to ``stop``), fix the head."""
    entries = stored_entries(node.engine)[:stop]
    previous = leaf_hash(stored_bytes(node.engine)[start - 1])
    with node.engine.begin() as conn:
        for entry in entries[start:]:
            fields = {**entry, "prev": previous.hex()}
            if entry["seq"] == start:
                fields["reason"] = "nothing happened"
            fields["time"] = dt.datetime.fromisoformat(fields["time"].replace("Z", "+00:00"))
            data = encode_entry(**fields)
            previous = leaf_hash(data)
            conn.execute(
                update(audit_entries)
                .where(audit_entries.c.seq == entry["seq"])
                .values(entry=data, leaf_hash=previous)
            )
        conn.execute(delete(audit_entries).where(audit_entries.c.seq >= len(entries)))
        conn.execute(update(audit_head).values(size=len(entries), last_leaf=previous))


# --- item 10: the anchor ---------------------------------------------------------------------


def test_a_rechained_history_with_the_checkpoint_tables_deleted_is_never_signed(
    settings: NodeSettings, signed: Node
) -> None:
    """The attack exactly: rewrite an entry, re-chain, fix the head, delete the three tables."""
    rechain(signed, 3)
    with signed.engine.begin() as conn:
        for table in (audit_checkpoints, audit_nodes, audit_lookup):
            conn.execute(delete(table))
    with pytest.raises(LogIntegrityError) as refused:
        Node.open(settings)
    message = str(refused.value)
    assert "refusing to serve: the log was rewritten: its first 12 entries do not match" in message
    assert "the newest checkpoint this node signed (tree size 12" in message
    assert str(anchor.path_in(settings.keys_dir)) in message
    with pytest.raises(LogIntegrityError, match="refusing to sign: the log's first 12 entries"):
        checkpoint_store.sign(signed.engine, signed.key.private_key, now=now())  # the running node
    with signed.engine.connect() as conn:
        assert conn.execute(audit_checkpoints.select()).first() is None  # nothing was signed


def test_a_clean_rollback_to_an_older_copy_of_the_database_is_refused(tmp_path: Path) -> None:
    settings, _ = init_node(tmp_path / "xa", node_id="XA", name="A")
    database = Path(settings.database.removeprefix("sqlite:///"))
    node = Node.open(settings)
    add_entries(node.engine, 4)
    checkpoint_store.sign(node.engine, node.key.private_key, now=now())
    with (
        closing(sqlite3.connect(database)) as source,
        closing(sqlite3.connect(tmp_path / "copy.sqlite3")) as copy,
    ):
        source.backup(copy)  # a clean, self-consistent older state
    add_entries(node.engine, 6, tag="later")
    checkpoint_store.sign(node.engine, node.key.private_key, now=now())
    node.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(tmp_path / "copy.sqlite3", database)
    with pytest.raises(LogIntegrityError) as refused:
        Node.open(settings)
    message = str(refused.value)
    assert "the database was rolled back or its log cut short" in message
    assert "covers 10 entries but the database holds 4" in message
    assert "entries seq 4..9 are gone" in message


def test_a_fresh_node_and_its_restarts_start_and_keep_an_anchor(tmp_path: Path) -> None:
    settings, _ = init_node(tmp_path / "xa", node_id="XA", name="A")
    path = anchor.path_in(settings.keys_dir)
    node = Node.open(settings)
    opening = anchor.read(path)
    assert opening is not None
    assert opening.checkpoint.tree_size == 0
    assert stat_mode(path) == 0o600
    add_entries(node.engine, 3)
    signed = checkpoint_store.sign(node.engine, node.key.private_key, now=now())
    assert anchor.read(path) == signed  # written with the checkpoint, before its commit
    node.close()
    for _restart in range(2):
        Node.open(settings).close()
    assert [e["action"] for e in stored_entries(Node.open(settings).engine)].count(
        "audit.anchor"
    ) == 0  # a new node never needed to adopt anything


def test_a_node_made_before_anchors_adopts_its_log_says_so_and_is_protected_after(
    tmp_path: Path,
) -> None:
    settings, _ = init_node(tmp_path / "xa", node_id="XA", name="A")
    node = Node.open(settings)
    add_entries(node.engine, 5)
    checkpoint_store.sign(node.engine, node.key.private_key, now=now())
    node.close()
    anchor.path_in(settings.keys_dir).unlink()  # as on a node made before this change
    node = Node.open(settings)
    adopted = stored_entries(node.engine)[-1]
    assert (adopted["action"], adopted["actor"], adopted["outcome"]) == (
        "audit.anchor",
        "node",
        "allowed",
    )
    assert "adopted the database's log of 5 entries" in adopted["reason"]
    held = anchor.read(anchor.path_in(settings.keys_dir))
    assert held is not None
    assert held.checkpoint.tree_size == 6
    rechain(node, 2)
    with node.engine.begin() as conn:
        for table in (audit_checkpoints, audit_nodes, audit_lookup):
            conn.execute(delete(table))
    node.close()
    with pytest.raises(LogIntegrityError, match="rewritten"):
        Node.open(settings)


def test_a_damaged_anchor_file_is_refused_by_name(settings: NodeSettings, signed: Node) -> None:
    anchor.path_in(settings.keys_dir).write_text("{}")
    with pytest.raises(LogIntegrityError, match=r"audit anchor .* is damaged"):
        Node.open(settings)


def stat_mode(path: Path) -> int:
    return os.stat(path).st_mode & 0o777


# --- item 11: partial damage refuses at start-up, never a raw IntegrityError -------------------


def test_leftover_lookup_rows_refuse_start_up_and_never_fail_signing_raw(
    settings: NodeSettings, signed: Node
) -> None:
    add_entries(signed.engine, 2, tag="tail")
    with signed.engine.begin() as conn:
        conn.execute(
            insert(audit_lookup).values(seq=12, time=now(), actor="node", action="policy.load")
        )
    with pytest.raises(LogIntegrityError, match="lookup index"):
        checkpoint_store.sign(signed.engine, signed.key.private_key, now=now())
    with pytest.raises(LogIntegrityError, match=r"lookup index \(audit_lookup\) holds 13 rows"):
        Node.open(settings)


def test_an_extra_entry_row_beyond_the_head_refuses_start_up_and_appends(
    settings: NodeSettings, signed: Node
) -> None:
    with signed.engine.begin() as conn:
        conn.execute(insert(audit_entries).values(seq=12, entry=b"{}", leaf_hash=b"\0" * 32))
    with pytest.raises(
        LogIntegrityError, match=r"an entry already holds (seq 12|the next sequence number)"
    ):
        add_entries(signed.engine, 1)
    with pytest.raises(LogIntegrityError, match="holds entry seq 12 beyond the head"):
        Node.open(settings)


def test_an_extra_subtree_row_refuses_start_up(settings: NodeSettings, signed: Node) -> None:
    with signed.engine.begin() as conn:
        conn.execute(insert(audit_nodes).values(height=1, idx=40, hash=b"\1" * 32))
    with pytest.raises(LogIntegrityError, match=r"audit_nodes"):
        Node.open(settings)


def test_a_checkpoint_row_that_disagrees_with_its_line_refuses_start_up(
    settings: NodeSettings, signed: Node
) -> None:
    with signed.engine.begin() as conn:
        conn.execute(update(audit_checkpoints).values(root_hash="ab" * 32))
    with pytest.raises(LogIntegrityError, match="disagrees with its signed line"):
        Node.open(settings)


def test_a_damaged_checkpoint_row_refuses_start_up(settings: NodeSettings, signed: Node) -> None:
    """Every stored checkpoint row is read, not only the newest one."""
    with signed.engine.begin() as conn:
        conn.execute(
            insert(audit_checkpoints).values(
                tree_size=5, root_hash="cd" * 32, time=now(), key_id="x", line=b"{}"
            )
        )
    with pytest.raises(LogIntegrityError, match="checkpoint line of tree size 5 is damaged"):
        Node.open(settings)


# --- item 12: name exactly what changed ------------------------------------------------------


def test_a_cut_log_with_replaced_entries_names_them_and_the_gone(
    settings: NodeSettings, signed: Node
) -> None:
    """Entries 4-5 replaced (re-chained) and 6..11 deleted: both are named, not only the cut."""
    rechain(signed, 4, stop=6)
    with pytest.raises(LogIntegrityError) as refused:
        Node.open(settings)
    message = str(refused.value)
    assert "covers 12 entries but the database holds 6" in message
    assert "entries seq 4..5 are replaced" in message
    assert "entries seq 6..11 are gone" in message


def test_the_anchor_keeps_the_ledger_totals_signed_with_its_checkpoint(node: Node) -> None:
    """Issue 9: each checkpoint anchors the spent budget, signed; an edited total is refused."""
    charge = Charge(
        scope="global", partner_id="*", schema_id="weekly_epi@1", period="total", cap_micro=9
    )
    with writing(node.engine) as conn:
        ledger.reserve(conn, [charge], 4, now())
    signed = checkpoint_store.sign(node.engine, node.key.private_key, now=now())
    path = anchor.path_in(node.settings.keys_dir)
    assert anchor.read(path) == signed
    totals = anchor.read_ledger(path, node.key.public_key)
    assert totals == [("global", "*", "weekly_epi@1", "total", 4, 9)]
    held = path.read_text().replace('"total",4,9', '"total",0,9')
    path.write_text(held)
    with pytest.raises(LogIntegrityError, match="does not verify"):
        anchor.read_ledger(path, node.key.public_key)
