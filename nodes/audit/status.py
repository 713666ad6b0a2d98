"""The audit log at a glance, for ``/readyz`` details and the operator's metrics.

Reports, never decides: a flagged peer does not make this node unready (it can still serve
its agencies), but an operator and the orchestrator's logs should see it at once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from nodes.audit.canonical import format_time
from nodes.audit.checkpoint_store import latest_checkpoint
from nodes.audit.log import read_head
from nodes.audit.witness import declared_epochs, flagged_peers
from nodes.database import reading


def summary(engine: Engine, *, now: datetime) -> dict[str, Any]:
    """Log size, the latest checkpoint and its age, uncovered entries, flagged peers, and the
    new epochs peers declared (a declared gap in their logs: not a flag, but worth seeing)."""
    with reading(engine) as conn:
        head = read_head(conn)
        signed = latest_checkpoint(conn)
        flagged = flagged_peers(conn)
        epochs = declared_epochs(conn)
    size = 0 if head is None else head.size
    checkpoint: dict[str, Any] | None = None
    covered = 0
    if signed is not None:
        c = signed.checkpoint
        covered = c.tree_size
        checkpoint = {
            "tree_size": c.tree_size,
            "root_hash": c.root_hash,
            "time": format_time(c.time),
            "age_seconds": round((now - c.time).total_seconds(), 1),
        }
    return {
        "log_size": size,
        "checkpoint": checkpoint,
        "uncovered_entries": size - covered,
        "flagged_peers": [
            {
                "peer_id": p.peer_id,
                "since": format_time(p.first_flagged),
                "flags": p.flags,
                "reason": p.reason,
            }
            for p in flagged
        ],
        "peer_epochs": [
            {
                "peer_id": e.peer_id,
                "accepted": format_time(e.accepted_at),
                "tree_size": e.tree_size,
                "reason": e.reason.split("; statement ", 1)[0],
            }
            for e in epochs
        ],
    }
