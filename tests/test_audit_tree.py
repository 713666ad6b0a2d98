"""The stored Merkle tree and checkpoint signing: same answers as the in-memory tree, O(log n)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import delete, func, select

from exchange.api.app import create_app
from nodes.audit import checkpoint_store, tree
from nodes.audit.errors import LogIntegrityError
from nodes.audit.merkle import Frontier, MerkleTree, leaf_hash, subtrees
from nodes.audit.tables import audit_entries, audit_head, audit_nodes
from nodes.database import reading
from nodes.node import Node
from nodes.settings import NodeSettings
from tests.audit_support import add_entries, stored_bytes
from tests.conftest import now


def _leaves(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


@given(st.integers(min_value=0, max_value=140), st.data())
def test_a_frontier_completes_exactly_the_trees_subtrees(n: int, data: st.DataObject) -> None:
    leaves = _leaves(n)
    full = MerkleTree(leaves)
    cut = data.draw(st.integers(min_value=0, max_value=n))
    start = MerkleTree(leaves[:cut])
    frontier = Frontier(cut, [start._range(j << h, (j + 1) << h) for h, j in subtrees(0, cut)])
    completed = []
    for leaf in leaves[cut:]:
        completed += frontier.append(leaf)
    assert frontier.size == n
    assert frontier.root() == full.root()
    for height, index, value in completed:
        assert (index + 1) << height <= n
        assert (index + 1) << height > cut
        assert value == full._range(index << height, (index + 1) << height)
    expected = sum(((n >> h) - (cut >> h)) for h in range(1, max(n, 1).bit_length()))
    assert len(completed) == expected


def test_a_frontier_refuses_an_edge_of_the_wrong_shape() -> None:
    with pytest.raises(ValueError, match="edge subtrees"):
        Frontier(5, [leaf_hash(b"x")])


def test_stored_roots_and_proofs_match_the_in_memory_tree(node: Node) -> None:
    for batch in (1, 6, 9, 16, 3):
        add_entries(node.engine, batch, tag=f"b{batch}-")
        checkpoint_store.sign(node.engine, node.key.private_key, now=now())
    memory = MerkleTree([leaf_hash(d) for d in stored_bytes(node.engine)])
    size = memory.size
    with reading(node.engine) as conn:
        for n in range(size + 1):
            assert tree.root_at(conn, n) == memory.root(n)
            for old in range(n + 1):
                assert tree.consistency_proof(conn, old, n) == memory.consistency_proof(old, n)
            for seq in range(n):
                assert tree.inclusion_proof(conn, seq, n) == memory.inclusion_proof(seq, n)
        stored = conn.execute(select(func.count()).select_from(audit_nodes)).scalar_one()
    assert stored == size - size.bit_count()  # every complete subtree of height >= 1, once


def test_a_proof_fetches_only_olog_n_hashes(node: Node) -> None:
    add_entries(node.engine, 64)
    checkpoint_store.sign(node.engine, node.key.private_key, now=now())
    fetched: list[int] = []
    real = tree.fetch

    def counting(conn: object, wanted: object) -> dict[tuple[int, int], bytes]:
        found = real(conn, wanted)  # type: ignore[arg-type]
        fetched.append(len(found))
        return found

    with reading(node.engine) as conn, pytest.MonkeyPatch.context() as patch:
        patch.setattr(tree, "fetch", counting)
        tree.inclusion_proof(conn, 37, 64)
    assert fetched == [6]


def test_signing_without_new_entries_reuses_or_refreshes_the_checkpoint(node: Node) -> None:
    add_entries(node.engine, 3)
    first = checkpoint_store.sign(node.engine, node.key.private_key, now=now())
    assert checkpoint_store.sign(node.engine, node.key.private_key, now=now(), force=False) == first
    assert checkpoint_store.sign_if_due(node.engine, node.key.private_key, now=now()) is None
    again = checkpoint_store.sign(node.engine, node.key.private_key, now=now())
    assert again.checkpoint.tree_size == 3
    assert again.body != first.body
    add_entries(node.engine, 1)
    due = checkpoint_store.sign_if_due(node.engine, node.key.private_key, now=now())
    assert due is not None
    assert due.checkpoint.tree_size == 4
    assert checkpoint_store.latest_checkpoint(node.engine) == due


def test_signing_refuses_a_log_shorter_than_its_checkpoint(node: Node) -> None:
    add_entries(node.engine, 4)
    checkpoint_store.sign(node.engine, node.key.private_key, now=now())
    with node.engine.begin() as conn:
        conn.execute(audit_head.update().values(size=2))
    with pytest.raises(LogIntegrityError, match="holds 2 entries but checkpoint 4 was signed"):
        checkpoint_store.sign(node.engine, node.key.private_key, now=now())


def test_signing_refuses_a_log_with_a_missing_entry(node: Node) -> None:
    add_entries(node.engine, 4)
    checkpoint_store.sign(node.engine, node.key.private_key, now=now())
    add_entries(node.engine, 3)
    with node.engine.begin() as conn:
        conn.execute(delete(audit_entries).where(audit_entries.c.seq == 5))
    with pytest.raises(LogIntegrityError, match="entry seq 5 is missing"):
        checkpoint_store.sign(node.engine, node.key.private_key, now=now())
    assert checkpoint_store.latest_checkpoint(node.engine).checkpoint.tree_size == 4  # type: ignore[union-attr]


def _wait_for(condition: Callable[[], bool], seconds: float = 60.0) -> bool:
    """Poll until ``condition`` holds: as fast as the machine, and a slow one gets a minute."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_the_app_signs_checkpoints_while_there_is_activity(settings: NodeSettings) -> None:
    fast = NodeSettings.load(settings.directory, checkpoint_interval_seconds=1)
    node = Node.open(fast)
    with TestClient(create_app(fast, node=node)):
        add_entries(node.engine, 2)

        def covered() -> bool:
            latest = checkpoint_store.latest_checkpoint(node.engine)
            return latest is not None and latest.checkpoint.tree_size == 2

        assert _wait_for(covered)
        add_entries(node.engine, 1)
    latest = checkpoint_store.latest_checkpoint(node.engine)  # shutdown signed the last one
    assert latest is not None
    assert latest.checkpoint.tree_size == 3
    node.close()
