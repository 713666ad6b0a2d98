"""Helpers for policy and release tests: the sample policy, a fixed clock, seeded reports."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from sqlalchemy import select

from nodes import reports, tokens
from nodes.audit.tables import audit_entries
from nodes.directory import sample_gazetteer
from nodes.node import Node
from nodes.releases.tables import budget_ledger
from nodes.tokens import TokenRecord
from policies.node_policy import NodePolicy, load_policy
from schemas.registry import SchemaRegistry
from schemas.validation import from_json_rows

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_POLICY = ROOT / "docs" / "examples" / "policy-xa.yaml"
NOW = dt.datetime(2026, 3, 16, 12, 0, tzinfo=dt.UTC)  # a Monday; 2026-W12 starts today


def sample_policy_text() -> str:
    return SAMPLE_POLICY.read_text(encoding="utf-8")


def policy_from_text(text: str, node: Node | None = None) -> NodePolicy:
    return load_policy(
        text,
        source="policy.yaml",
        node_id="XA",
        registry=SchemaRegistry(),
        gazetteer=node.gazetteer if node else sample_gazetteer("XA"),
        week_system="iso",
    )


def install_policy(node: Node, text: str | None = None) -> NodePolicy:
    """Apply ``text`` (default: the sample policy) as the node's policy, as an operator would."""
    if text is None:
        text = sample_policy_text()
    source = str(node.settings.policy_file)
    return node.apply_policy(text, source=source, actor="operator", now=NOW)


def agency(node: Node) -> TokenRecord:
    record, _secret = tokens.issue_token(
        node.engine,
        name="moh",
        role="agency",
        schemas=("weekly_epi@1", "line_list@1", "hospital_capacity@1"),
        now=NOW,
    )
    return record


def push(node: Node, token: TokenRecord, schema_id: str, rows: list[dict[str, Any]]) -> int:
    schema = node.registry.get(schema_id)
    batch = from_json_rows(schema, rows, node.validation)
    stored = reports.store(node.engine, batch=batch, token=token, idempotency_key=None, now=NOW)
    return stored.id


def weekly(
    areas: tuple[str, ...], weeks: range, *, cases: int = 3, year: int = 2026
) -> list[dict[str, Any]]:
    return [
        {
            "area": area,
            "week": f"{year}-W{w:02d}",
            "age_band": "25-44",
            "sex": "female",
            "cases": cases,
            "deaths": 0,
            "admissions": 1,
            "tests": 4,
        }
        for area in areas
        for w in weeks
    ]


def edited_policy(*replacements: tuple[str, str]) -> str:
    """The sample policy with each ``(old, new)`` replaced once (each ``old`` must exist)."""
    text = sample_policy_text()
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def release_audit(node: Node) -> list[dict[str, Any]]:
    """The audit entries of releases and refusals, oldest first."""
    with node.engine.connect() as conn:
        rows = conn.execute(select(audit_entries.c.entry).order_by(audit_entries.c.seq)).all()
    entries = [json.loads(bytes(r.entry)) for r in rows]
    return [e for e in entries if e["action"] == "release"]


def ledger_spent(node: Node) -> dict[tuple[str, str], int]:
    """(partner id or *, schema) -> spent µε, over all periods."""
    with node.engine.connect() as conn:
        rows = conn.execute(select(budget_ledger)).all()
    out: dict[tuple[str, str], int] = {}
    for r in rows:
        out[(r.partner_id, r.schema_id)] = out.get((r.partner_id, r.schema_id), 0) + r.spent_micro
    return out
