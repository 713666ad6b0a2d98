"""Helpers shared by the audit tests: read the stored log back, append filler entries."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Engine, select

from nodes import tokens
from nodes.access import Role
from nodes.audit.log import append
from nodes.audit.tables import audit_entries
from nodes.database import writing
from tests.conftest import now


def stored_entries(engine: Engine) -> list[dict[str, Any]]:
    """Every stored entry, parsed, in seq order."""
    with engine.connect() as conn:
        rows = conn.execute(select(audit_entries.c.entry).order_by(audit_entries.c.seq)).all()
    return [json.loads(bytes(r.entry)) for r in rows]


def stored_bytes(engine: Engine) -> list[bytes]:
    """Every stored entry's canonical bytes, in seq order."""
    with engine.connect() as conn:
        rows = conn.execute(select(audit_entries.c.entry).order_by(audit_entries.c.seq)).all()
    return [bytes(r.entry) for r in rows]


def add_entries(
    engine: Engine, count: int, *, actor: str = "operator:tester", tag: str = ""
) -> None:
    """Append ``count`` entries, one transaction each, as an act of ``actor`` would."""
    for i in range(count):
        with writing(engine) as conn:
            append(
                conn,
                actor=actor,
                role="operator",
                action="key.rotate",
                resource=f"key:filler-{tag}{i}",
                outcome="allowed",
                reason=f"filler entry {tag}{i}",
                now=now(),
            )


def bearer(engine: Engine, *, name: str, role: Role) -> dict[str, str]:
    """Issue a token of ``role`` and return its Authorization header."""
    schemas = ("weekly_epi@1",) if role == "agency" else ()
    _record, secret = tokens.issue_token(engine, name=name, role=role, schemas=schemas, now=now())
    return {"Authorization": f"Bearer {secret}"}
