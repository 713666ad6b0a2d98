"""The active policy, kept in the database: every worker and replica runs on the newest row.

Each row is a policy version the node switched to, with its hash and (since migration 0007)
its YAML text; the row with the highest id is the active policy. A request checks that
row's hash (one read of the primary key index) and reloads only when it changed, so
``exchange policy apply`` reaches every worker on its next request, without a restart.

Every ``Node.open`` (each worker, each CLI command) looks at the policy; logging each of
those would bury the changes that matter, so a load from the node's file is recorded only
when its hash differs from the active one (``policy.load``). A new node without a policy
file (deny everything) records nothing until its first policy. An apply is always recorded
(``policy.apply``): an operator chose it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Column, Connection, Engine, Integer, String, Table, Text, insert, select

from nodes.audit import log as audit_log
from nodes.database import reading, writing
from nodes.tables import UTCDateTime, metadata
from policies.node_policy import NodePolicy

policy_loads = Table(
    "policy_loads",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("policy_hash", String(80), nullable=False),  # "sha256:" + 64 hex
    Column("source", String(500), nullable=False),
    Column("loaded_at", UTCDateTime, nullable=False),
    Column("document", Text, nullable=True),  # the YAML text; None: no policy (deny all)
)


@dataclass(frozen=True)
class StoredPolicy:
    hash: str
    source: str
    document: str | None  # None: no policy (deny all), or a row from before migration 0007
    loaded_at: dt.datetime


def active_hash(engine: Engine) -> str | None:
    """The active policy's hash: the per-request check, one indexed read."""
    with reading(engine) as conn:
        return conn.execute(
            select(policy_loads.c.policy_hash).order_by(policy_loads.c.id.desc()).limit(1)
        ).scalar_one_or_none()


def active(engine: Engine) -> StoredPolicy | None:
    """The newest row, text and all; None on a node that never recorded a policy."""
    with reading(engine) as conn:
        return _latest(conn)


def _latest(conn: Connection) -> StoredPolicy | None:
    row = conn.execute(select(policy_loads).order_by(policy_loads.c.id.desc()).limit(1)).first()
    if row is None:
        return None
    m = row._mapping
    return StoredPolicy(m["policy_hash"], m["source"], m["document"], m["loaded_at"])


def record_load(
    engine: Engine, policy: NodePolicy, *, now: dt.datetime, document: str | None = None
) -> bool:
    """Make ``policy`` (read from the node's file, text ``document``) the active one, and
    audit it, unless it is already active; True if it was new."""
    with writing(engine) as conn:
        last = _latest(conn)
        if last is None and policy.missing:
            return False  # a new node that has never had a policy: nothing to say
        if last is not None and last.hash == policy.hash:
            if last.document is None and document is not None:  # a row from before 0007
                _insert(conn, policy, document=document, now=now)
            return False
        _insert(conn, policy, document=document, now=now)
        if policy.missing:
            reason = "no policy file: the node shares nothing"
        else:
            reason = "policy loaded: " + _counts(policy)
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


def record_apply(
    engine: Engine, policy: NodePolicy, *, document: str, actor: str, now: dt.datetime
) -> None:
    """Make a validated policy the active one for every worker, audited as ``actor``."""
    with writing(engine) as conn:
        last = _latest(conn)
        _insert(conn, policy, document=document, now=now)
        unchanged = last is not None and last.hash == policy.hash
        audit_log.append(
            conn,
            actor=actor,
            role="operator",
            action="policy.apply",
            resource=f"policy:{policy.source[-200:]}",
            outcome="allowed",
            reason=("policy applied (unchanged): " if unchanged else "policy applied: ")
            + _counts(policy),
            policy_hash=policy.hash,
            now=now,
        )


def _insert(
    conn: Connection, policy: NodePolicy, *, document: str | None, now: dt.datetime
) -> None:
    conn.execute(
        insert(policy_loads).values(
            policy_hash=policy.hash, source=policy.source[-500:], loaded_at=now, document=document
        )
    )


def _counts(policy: NodePolicy) -> str:
    document = policy.document
    return f"{len(document.agreements)} agreement(s), {len(document.red_lines)} red line(s)"
