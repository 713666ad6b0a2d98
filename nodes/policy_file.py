"""The node's policy text, from its file (``DIR/policy.yaml``) or the database: the I/O around
`policies`.

No policy means no agreements: the node shares nothing (deny by default), and says so in
every decision. A text that does not validate is refused, naming the file, the place and
the reason (`policies.document.PolicyError`, a ValueError); a half-valid policy is never
applied. Loading also checks that OpenDP runs with exactly the ``contrib`` feature, so a
node never serves with weakened guarantees.

The active policy lives in the database (`nodes.policy_loads`); the file is how the first
policy arrives and a copy of the active one, rewritten atomically by every apply.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from nodes.settings import NodeSettings
from policies import privacy
from policies.node_policy import NodePolicy, deny_all, load_policy
from schemas.gazetteer import Gazetteer
from schemas.registry import SchemaRegistry


def policy_from_text(
    text: str | None,
    *,
    source: str,
    settings: NodeSettings,
    gazetteer: Gazetteer,
    registry: SchemaRegistry,
) -> NodePolicy:
    """Compile a policy for this node; ``None`` is no policy (deny all). Raises PolicyError."""
    privacy.assert_only_contrib()
    if text is None:
        return deny_all(
            source=source,
            node_id=settings.node_id,
            registry=registry,
            gazetteer=gazetteer,
            week_system=settings.week_system,
        )
    return load_policy(
        text,
        source=source,
        node_id=settings.node_id,
        registry=registry,
        gazetteer=gazetteer,
        week_system=settings.week_system,
    )


def read_policy_file(settings: NodeSettings) -> str | None:
    path = settings.policy_file
    return path.read_text(encoding="utf-8") if path.exists() else None


def validate_file(
    path: Path, *, settings: NodeSettings, gazetteer: Gazetteer, registry: SchemaRegistry
) -> NodePolicy:
    """Check a candidate policy file for this node without installing it."""
    return policy_from_text(
        path.read_text(encoding="utf-8"),
        source=str(path),
        settings=settings,
        gazetteer=gazetteer,
        registry=registry,
    )


def write_policy_file(settings: NodeSettings, text: str) -> None:
    """Replace ``DIR/policy.yaml`` atomically: a reader sees the old text or the new, whole."""
    path = settings.policy_file
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".policy-", suffix=".yaml")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        Path(temporary).chmod(0o640)
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
