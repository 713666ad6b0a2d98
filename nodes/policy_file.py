"""Reading the node's policy file (``DIR/policy.yaml``): the I/O around `policies`.

No file means no agreements: the node shares nothing (deny by default), and says so in
every decision. A file that does not validate stops the node from starting, naming the
file, the place and the reason (`policies.document.PolicyError`, a ValueError); a
half-valid policy is never applied. Loading also checks that OpenDP runs with exactly the
``contrib`` feature, so a node never serves with weakened guarantees.
"""

from __future__ import annotations

from pathlib import Path

from nodes.settings import NodeSettings
from policies import privacy
from policies.node_policy import NodePolicy, deny_all, load_policy
from schemas.gazetteer import Gazetteer
from schemas.registry import SchemaRegistry


def load_node_policy(
    settings: NodeSettings, *, gazetteer: Gazetteer, registry: SchemaRegistry
) -> NodePolicy:
    """The node's policy. Raises PolicyError (ValueError) if the file does not validate."""
    privacy.assert_only_contrib()
    path = settings.policy_file
    if not path.exists():
        return deny_all(
            source=str(path),
            node_id=settings.node_id,
            registry=registry,
            gazetteer=gazetteer,
            week_system=settings.week_system,
        )
    return load_policy(
        path.read_text(encoding="utf-8"),
        source=str(path),
        node_id=settings.node_id,
        registry=registry,
        gazetteer=gazetteer,
        week_system=settings.week_system,
    )


def validate_file(
    path: Path, *, settings: NodeSettings, gazetteer: Gazetteer, registry: SchemaRegistry
) -> NodePolicy:
    """Check a candidate policy file for this node without installing it."""
    return load_policy(
        path.read_text(encoding="utf-8"),
        source=str(path),
        node_id=settings.node_id,
        registry=registry,
        gazetteer=gazetteer,
        week_system=settings.week_system,
    )
