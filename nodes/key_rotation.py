"""Rotating the node's identity key as an act: the new key, endorsed by the old one
(`nodes.keys.rotate`), and its entry in the audit log. The CLI and the exercise runner both
rotate through here, so a rotation is always logged the same way."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine

from nodes import keys
from nodes.audit import log as audit_log
from nodes.database import writing
from nodes.identity import NodeKey
from nodes.settings import NodeSettings


def rotate(
    settings: NodeSettings, engine: Engine, *, actor: str, grace: timedelta, now: datetime
) -> tuple[NodeKey, NodeKey]:
    """Make a new key current, the old one valid for ``grace``; log it. Returns (new, old)."""
    new, old = keys.rotate(settings.keys_dir, node_id=settings.node_id, grace=grace, now=now)
    hours = grace.total_seconds() / 3600
    with writing(engine) as conn:
        audit_log.append(
            conn,
            actor=actor,
            role="operator",
            action="key.rotate",
            resource=f"key:{new.kid}",
            outcome="allowed",
            reason=f"key {new.kid} is current; {old.kid} stays valid for {hours:g} h",
            now=now,
        )
    return new, old
