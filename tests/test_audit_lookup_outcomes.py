"""The lookup index's outcome columns (migration 0009) and the refusal counters built on them.

Expected counts are computed here from the exported or stored entries' JSON, by reading the
fields directly, never through the code under test.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from fastapi.testclient import TestClient

from nodes import migrate
from nodes.audit import checkpoint_store
from nodes.audit import export as log_export
from nodes.audit.entry import AuditEntry
from nodes.audit.log import append, initialize
from nodes.audit.summary import release_refusals
from nodes.database import make_engine, writing
from nodes.node import Node
from nodes.releases import pipeline
from tests.audit_support import add_entries, bearer, stored_entries
from tests.release_support import NOW, agency, install_policy, push, weekly
from tests.test_metrics import QUERY, scrape, value

T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)


def _append(conn: sa.Connection, **fields: Any) -> None:
    base: dict[str, Any] = {
        "actor": "partner:XB",
        "role": "partner",
        "action": "release",
        "resource": "schema:weekly_epi@1",
        "outcome": "denied",
        "reason": "refused",
        "partner": "XB",
        "schema": "weekly_epi@1",
        "now": T0,
    }
    append(conn, **(base | fields))


def _format1_entry(seq: int) -> bytes:
    """A format-1 refusal as written before structured fields: ``rejected``, ``peer:XC``."""
    return AuditEntry(
        seq=seq,
        time=T0,
        actor="peer:XC",
        role="partner",
        action="release",
        resource="schema/weekly_epi@1",
        outcome="rejected",
        reason="old refusal",
        policy_hash=None,
        request_digest=None,
        prev="a" * 64,
        node_id="XA",
        structured=False,
    ).to_bytes()


def _downgrade(engine: sa.Engine, revision: str) -> None:
    with engine.begin() as conn:
        config = migrate._config()
        config.attributes["connection"] = conn
        command.downgrade(config, revision)


def test_migration_0009_backfills_existing_entries_and_downgrades(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        migrate.upgrade(engine, "0008")
        initialize(engine, node_id="XA")
        with writing(engine) as conn:
            _append(conn, rule="red line displacement-figures")
            _append(conn, rule="budget")
            _append(conn)  # a refusal written before refusals named their rule
            _append(conn, outcome="allowed", epsilon_micro=500_000)
            _append(
                conn,
                actor="operator",
                role="operator",
                action="policy.load",
                resource="policy:sha256:00",
                outcome="allowed",
                partner=None,
                schema=None,
            )
        with engine.begin() as conn:  # an entry written before format 2
            conn.execute(
                sa.text("INSERT INTO audit_entries (seq, entry, leaf_hash) VALUES (5, :e, :h)"),
                {"e": _format1_entry(5), "h": b"\0" * 32},
            )
        with engine.begin() as conn:  # the index rows 0008 would have written
            for seq, entry in enumerate(stored_entries(engine)):
                conn.execute(
                    sa.text(
                        "INSERT INTO audit_lookup (seq, time, actor, action) "
                        "VALUES (:s, :t, :a, :x)"
                    ),
                    {"s": seq, "t": T0, "a": entry["actor"], "x": entry["action"]},
                )
        migrate.upgrade(engine, "0009")
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT seq, outcome, partner, schema, rule FROM audit_lookup ORDER BY seq")
            ).all()
        assert [tuple(r) for r in rows] == [
            (0, "denied", "XB", "weekly_epi@1", "red line displacement-figures"),
            (1, "denied", "XB", "weekly_epi@1", "budget"),
            (2, "denied", "XB", "weekly_epi@1", None),
            (3, "allowed", "XB", "weekly_epi@1", None),
            (4, "allowed", None, None, None),
            (5, "denied", "XC", "weekly_epi@1", None),  # format 1, read in today's words
        ]
        indexes = {i["name"] for i in sa.inspect(engine).get_indexes("audit_lookup")}
        assert "ix_audit_lookup_outcomes" in indexes

        _downgrade(engine, "0008")
        assert migrate.current_revision(engine) == "0008"
        columns = {c["name"] for c in sa.inspect(engine).get_columns("audit_lookup")}
        assert columns == {"seq", "time", "actor", "action"}
        indexes = {i["name"] for i in sa.inspect(engine).get_indexes("audit_lookup")}
        assert "ix_audit_lookup_outcomes" not in indexes
        assert "ix_audit_lookup_action_seq" in indexes  # the batch rebuild kept the others
        migrate.upgrade(engine, "0009")  # and up again, on the same rows
        with engine.connect() as conn:
            filled = conn.execute(
                sa.text("SELECT count(*) FROM audit_lookup WHERE outcome IS NOT NULL")
            ).scalar()
        assert filled == 6
    finally:
        engine.dispose()


def _refusals_in_export(node: Node) -> Counter[tuple[str, str, str]]:
    """Refusals per (partner, schema, rule), read from the export's entry lines."""
    final = log_export.prepare(
        node.engine, node.key.private_key, actor="operator", role="operator", now=NOW
    )
    counts: Counter[tuple[str, str, str]] = Counter()
    lines = b"".join(log_export.stream(node.engine, final)).splitlines()
    parsed: list[dict[str, Any]] = [json.loads(line) for line in lines]
    for entry in parsed:  # the header, key and checkpoint lines have no "action"
        if entry.get("action") == "release" and entry["outcome"] == "denied":
            counts[(entry["partner"], entry["schema"], entry.get("rule", ""))] += 1
    return counts


def _refuse(node: Node) -> None:
    install_policy(node)
    push(node, agency(node), "weekly_epi@1", weekly(("XA-P1-D1",), range(1, 5)))
    adm2 = QUERY.model_copy(update={"group_by": ("area:adm2",)})
    pipeline.release(node, partner_id="XB", query=QUERY, now=NOW)
    for partner, query in (("XB", adm2), ("XB", adm2), ("XZ", QUERY)):
        with pytest.raises(pipeline.PolicyDeniedError):
            pipeline.release(node, partner_id=partner, query=query, now=NOW)


def test_refusal_counters_equal_a_count_of_the_exported_entries(
    client: TestClient, node: Node
) -> None:
    operator = bearer(node.engine, name="ops", role="operator")
    _refuse(node)
    checkpoint_store.sign(
        node.engine, node.key.private_key, now=NOW
    )  # half indexed, half in the tail
    with pytest.raises(pipeline.PolicyDeniedError):
        adm2 = QUERY.model_copy(update={"group_by": ("area:adm2",)})
        pipeline.release(node, partner_id="XB", query=adm2, now=NOW)
    expected = _refusals_in_export(node)
    assert sum(expected.values()) == 4
    assert len(expected) == 2
    samples = scrape(client, operator)
    for (partner, schema, rule), n in expected.items():
        labels = {"partner": partner, "schema": schema, "rule": rule}
        assert value(samples, "exchange_refusals_total", **labels) == n
    refusals = [name for name, _labels in samples if name == "exchange_refusals_total"]
    assert len(refusals) == len(expected)


@contextmanager
def statements(engine: sa.Engine) -> Iterator[list[str]]:
    """Every SQL statement the engine sends while the block runs."""
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def test_a_scrape_reads_no_entry_the_latest_checkpoint_covers(
    client: TestClient, node: Node
) -> None:
    operator = bearer(node.engine, name="ops", role="operator")
    _refuse(node)
    checkpoint_store.sign(node.engine, node.key.private_key, now=NOW)
    with statements(node.engine) as sent:
        samples = scrape(client, operator)
    assert sent  # the listener sees the scrape's queries
    assert [s for s in sent if "audit_entries" in s] == []
    assert any("audit_lookup" in s and "GROUP BY" in s.upper() for s in sent)
    rule = {"partner": "XB", "schema": "weekly_epi@1", "rule": "agreement XB-epi-2026"}
    assert value(samples, "exchange_refusals_total", **rule) == 2

    add_entries(node.engine, 3)  # newer than the checkpoint: read, and only those
    with statements(node.engine) as sent:
        scrape(client, operator)
    touching = [s for s in sent if "audit_entries" in s]
    assert len(touching) == 1
    assert ">=" in touching[0]


def test_summary_counts_match_the_stored_entries_after_many_checkpoints(node: Node) -> None:
    """Refusals split across several checkpoints and a tail add up exactly."""
    for rule in ("budget", "deny by default", "budget", "budget"):
        with writing(node.engine) as conn:
            _append(conn, rule=rule, now=NOW)
        checkpoint_store.sign(node.engine, node.key.private_key, now=NOW)
    with writing(node.engine) as conn:
        _append(conn, rule="deny by default", now=NOW)
    expected = Counter(
        (e["partner"], e["schema"], e.get("rule", ""))
        for e in stored_entries(node.engine)
        if e["action"] == "release" and e["outcome"] == "denied"
    )
    assert release_refusals(node.engine) == expected
    assert expected[("XB", "weekly_epi@1", "budget")] == 3
