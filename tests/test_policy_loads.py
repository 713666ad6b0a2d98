"""Each policy a node starts running on is audited once, with its hash; re-opening is not a load."""

from __future__ import annotations

import shutil
from pathlib import Path

from nodes.node import Node
from nodes.settings import NodeSettings
from tests.audit_support import stored_entries

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "policy-xa.yaml"


def loads(node: Node) -> list[dict[str, object]]:
    return [e for e in stored_entries(node.engine) if e["action"] == "policy.load"]


def test_policy_loads_are_audited_once_per_version(settings: NodeSettings, node: Node) -> None:
    assert loads(node) == []  # a new node without a policy shares nothing: nothing to record

    shutil.copy(EXAMPLE, settings.policy_file)
    node.reload_policy()
    (loaded,) = loads(node)
    assert loaded["policy_hash"] == node.policy.hash and loaded["outcome"] == "allowed"
    assert "agreement(s)" in str(loaded["reason"])

    again = Node.open(settings)  # another worker, or a CLI command, with the same policy
    try:
        assert len(loads(again)) == 1
    finally:
        again.close()

    settings.policy_file.unlink()
    node.reload_policy()
    removed = loads(node)[-1]
    assert len(loads(node)) == 2 and removed["reason"] == "no policy file: the node shares nothing"
    assert removed["policy_hash"] == node.policy.hash != loaded["policy_hash"]
