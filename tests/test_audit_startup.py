"""Start-up: a node whose log was cut short or rewritten refuses to serve, and says why."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from sqlalchemy import delete, insert, update

from exchange.api.app import create_app
from nodes.audit import checkpoint_store
from nodes.audit.checkpoint import sign_checkpoint
from nodes.audit.entry import encode_entry
from nodes.audit.errors import LogIntegrityError
from nodes.audit.merkle import leaf_hash
from nodes.audit.tables import HEAD_ID, audit_checkpoints, audit_entries, audit_head, audit_nodes
from nodes.node import Node
from nodes.settings import NodeSettings
from tests.audit_support import add_entries, stored_bytes, stored_entries
from tests.conftest import now


@pytest.fixture
def signed_log(node: Node) -> Node:
    """A node with 10 entries covered by a checkpoint and 2 more that are not."""
    add_entries(node.engine, 10)
    checkpoint_store.sign(node.engine, node.key.private_key, now=now())
    add_entries(node.engine, 2, tag="tail")
    return node


def reopen(settings: NodeSettings) -> Node:
    return Node.open(settings)


def test_an_intact_log_opens(settings: NodeSettings, signed_log: Node) -> None:
    reopen(settings).close()


def test_a_log_cut_short_is_refused_even_with_the_head_row_fixed(
    settings: NodeSettings, signed_log: Node
) -> None:
    data = stored_bytes(signed_log.engine)
    with signed_log.engine.begin() as conn:
        conn.execute(delete(audit_entries).where(audit_entries.c.seq >= 7))
        conn.execute(update(audit_head).values(size=7, last_leaf=leaf_hash(data[6])))
    with pytest.raises(
        LogIntegrityError, match=r"refusing to serve: the log was cut short.*7\.\.9"
    ):
        reopen(settings)


def test_a_rewritten_and_rechained_log_is_refused(settings: NodeSettings, signed_log: Node) -> None:
    """The forger rewrites entries 4.. with valid chains, leaf hashes and head: only the
    signed root gives it away."""
    entries = stored_entries(signed_log.engine)
    previous = leaf_hash(stored_bytes(signed_log.engine)[3])
    with signed_log.engine.begin() as conn:
        for entry in entries[4:]:
            fields = {**entry, "reason": "nothing happened", "prev": previous.hex()}
            fields["time"] = dt.datetime.fromisoformat(fields["time"].replace("Z", "+00:00"))
            data = encode_entry(**fields)
            previous = leaf_hash(data)
            conn.execute(
                update(audit_entries)
                .where(audit_entries.c.seq == entry["seq"])
                .values(entry=data, leaf_hash=previous)
            )
        conn.execute(update(audit_head).values(last_leaf=previous))
    with pytest.raises(LogIntegrityError, match="rewritten: its first 10 entries do not match"):
        reopen(settings)


def test_a_modified_entry_is_refused_by_its_seq(settings: NodeSettings, signed_log: Node) -> None:
    data = stored_bytes(signed_log.engine)[11]
    with signed_log.engine.begin() as conn:
        conn.execute(
            update(audit_entries)
            .where(audit_entries.c.seq == 11)
            .values(entry=data.replace(b"filler entry", b"filler entrY"))
        )
    with pytest.raises(LogIntegrityError, match="entry seq 11 no longer matches its leaf hash"):
        reopen(settings)


def test_a_deleted_entry_in_the_middle_is_refused(settings: NodeSettings, signed_log: Node) -> None:
    with signed_log.engine.begin() as conn:
        conn.execute(delete(audit_entries).where(audit_entries.c.seq == 3))
    with pytest.raises(LogIntegrityError, match="entry seq 3 is missing"):
        reopen(settings)


def test_a_checkpoint_forged_with_another_key_is_refused(
    settings: NodeSettings, signed_log: Node
) -> None:
    forged = sign_checkpoint(
        Ed25519PrivateKey.generate(),
        tree_size=12,
        root_hash=b"\x01" * 32,
        time=now(),
        node_id="XA",
    )
    with signed_log.engine.begin() as conn:
        conn.execute(
            insert(audit_checkpoints).values(
                tree_size=12,
                root_hash=forged.checkpoint.root_hash,
                time=now(),
                key_id=forged.checkpoint.key_id,
                line=forged.to_line(),
            )
        )
    with pytest.raises(LogIntegrityError, match=r"names key .* which this node lacks"):
        reopen(settings)


def test_an_altered_subtree_cache_is_refused(settings: NodeSettings, signed_log: Node) -> None:
    with signed_log.engine.begin() as conn:
        conn.execute(
            update(audit_nodes)
            .where(audit_nodes.c.height == 3, audit_nodes.c.idx == 0)
            .values(hash=b"\x00" * 32)
        )
    with pytest.raises(LogIntegrityError, match=r"subtree \(height 3, index 0\) was altered"):
        reopen(settings)


def test_a_head_row_out_of_step_is_refused(settings: NodeSettings, signed_log: Node) -> None:
    with signed_log.engine.begin() as conn:
        conn.execute(update(audit_head).where(audit_head.c.id == HEAD_ID).values(size=20))
    with pytest.raises(LogIntegrityError, match="head row counts 20 entries but 12"):
        reopen(settings)


def test_the_app_refuses_to_start_on_a_cut_log(settings: NodeSettings, signed_log: Node) -> None:
    with signed_log.engine.begin() as conn:
        conn.execute(delete(audit_entries).where(audit_entries.c.seq >= 5))
    with (
        pytest.raises(LogIntegrityError, match="refusing to serve"),
        TestClient(create_app(settings)),
    ):
        pass


def test_an_empty_log_with_a_checkpoint_opens(settings: NodeSettings, node: Node) -> None:
    checkpoint_store.sign(node.engine, node.key.private_key, now=now())
    reopen(settings).close()


def test_check_audit_false_opens_a_cut_log_for_forensics(
    settings: NodeSettings, signed_log: Node
) -> None:
    with signed_log.engine.begin() as conn:
        conn.execute(delete(audit_entries).where(audit_entries.c.seq >= 5))
    Node.open(settings, check_audit=False).close()
