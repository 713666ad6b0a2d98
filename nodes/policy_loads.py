"""Recording which policy a node runs on: one audit entry each time the policy changes.

Every ``Node.open`` (each worker, each CLI command) loads the policy; logging each of those
would bury the changes that matter, so a load is recorded only when its hash differs from
the last one recorded. A new node without a policy file (deny everything) records nothing
until its first policy; removing the file later is recorded as a change.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Column, Engine, Integer, String, Table, insert, select

from nodes.audit import log as audit_log
from nodes.database import writing
from nodes.tables import UTCDateTime, metadata
from policies.node_policy import NodePolicy

policy_loads = Table(
    "policy_loads",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("policy_hash", String(80), nullable=False),  # "sha256:" + 64 hex
    Column("source", String(500), nullable=False),
    Column("loaded_at", UTCDateTime, nullable=False),
)


def record_load(engine: Engine, policy: NodePolicy, *, now: dt.datetime) -> bool:
    """Audit ``policy`` as loaded if it is not the policy last recorded; True if it was new."""
    with writing(engine) as conn:
        last = conn.execute(
            select(policy_loads.c.policy_hash).order_by(policy_loads.c.id.desc()).limit(1)
        ).scalar_one_or_none()
        if last == policy.hash or (last is None and policy.missing):
            return False  # unchanged, or a new node that has never had a policy: nothing to say
        conn.execute(
            insert(policy_loads).values(
                policy_hash=policy.hash, source=policy.source, loaded_at=now
            )
        )
        if policy.missing:
            reason = "no policy file: the node shares nothing"
        else:
            document = policy.document
            reason = (
                f"policy loaded: {len(document.agreements)} agreement(s), "
                f"{len(document.red_lines)} red line(s)"
            )
        audit_log.append(
            conn,
            actor="node",
            role="node",
            action="policy.load",
            resource=f"policy:{policy.source[-200:]}",
            outcome="allowed",
            reason=reason,
            policy_hash=policy.hash,
            now=now,
        )
        return True
