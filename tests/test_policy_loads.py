"""The active policy lives in the database: the file seeds a new node, and is audited once."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from nodes.node import Node
from nodes.settings import NodeSettings
from tests.audit_support import stored_entries
from tests.release_support import NOW, edited_policy, install_policy, sample_policy_text

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "policy-xa.yaml"


def entries(node: Node, action: str) -> list[dict[str, object]]:
    return [e for e in stored_entries(node.engine) if e["action"] == action]


def test_a_new_node_takes_its_file_and_records_it_once(settings: NodeSettings, node: Node) -> None:
    assert entries(node, "policy.load") == []  # no policy yet, nothing to record
    shutil.copy(EXAMPLE, settings.policy_file)
    first = Node.open(settings)  # the first start with a file: the file becomes the policy
    try:
        (loaded,) = entries(first, "policy.load")
        assert not first.policy.missing
        assert loaded["policy_hash"] == first.policy.hash
        assert loaded["outcome"] == "allowed"
        assert "agreement(s)" in str(loaded["reason"])
    finally:
        first.close()
    again = Node.open(settings)  # another worker, or a CLI command, with the same policy
    try:
        assert len(entries(again, "policy.load")) == 1
        assert again.policy.hash == loaded["policy_hash"]
    finally:
        again.close()


def test_the_database_wins_over_a_file_edited_behind_its_back(
    settings: NodeSettings, node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    applied = install_policy(node)
    assert settings.policy_file.read_text(encoding="utf-8") == sample_policy_text()
    settings.policy_file.write_text(
        edited_policy(("embargo_days: 14", "embargo_days: 2")), encoding="utf-8"
    )
    with caplog.at_level(logging.WARNING, logger="nodes.node"):
        restarted = Node.open(settings)
    try:
        assert restarted.policy.hash == applied.hash
        assert "differs from the active policy" in caplog.text
        assert "policy apply" in caplog.text
        assert entries(restarted, "policy.load") == []  # only the apply was recorded
    finally:
        restarted.close()


def test_a_removed_file_does_not_drop_the_active_policy(settings: NodeSettings, node: Node) -> None:
    applied = install_policy(node)
    settings.policy_file.unlink()
    restarted = Node.open(settings)
    try:
        assert restarted.policy.hash == applied.hash
        assert not restarted.policy.missing
    finally:
        restarted.close()


def test_an_invalid_policy_file_still_stops_a_node_that_has_none(settings: NodeSettings) -> None:
    settings.policy_file.write_text("version: 2\nnode: XA\n", encoding="utf-8")
    with pytest.raises(ValueError, match="invalid policy"):
        Node.open(settings)


def test_apply_of_the_same_policy_is_recorded_but_changes_nothing(node: Node) -> None:
    first = install_policy(node)
    second = node.apply_policy(
        sample_policy_text(), source="again.yaml", actor="operator:ops", now=NOW
    )
    applies = entries(node, "policy.apply")
    assert first.hash == second.hash
    assert len(applies) == 2
    assert str(applies[1]["reason"]).startswith("policy applied (unchanged)")
    assert applies[1]["actor"] == "operator:ops"
    assert applies[1]["policy_hash"] == first.hash
