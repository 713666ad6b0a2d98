"""The signed transparency review: exact figures, recomputed from an export, never the data."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, update
from starlette.testclient import TestClient
from typer.testing import CliRunner

from exchange.api.app import create_app
from exchange.cli import app as cli
from exchange.ui.views.transparency import review_for
from nodes import escalations, tokens
from nodes.audit import checkpoint_store
from nodes.audit.tables import audit_entries
from nodes.identity import NodeKey, key_id
from nodes.node import Node
from nodes.releases import pipeline
from nodes.reviews import transparency, transparency_check
from nodes.reviews.transparency import Period, PeriodError
from nodes.settings import NodeSettings
from policies.escalation import Proposal
from policies.query import ReleaseQuery
from tests.release_support import NOW, agency, edited_policy, install_policy, push, weekly
from tests.test_escalations import ESCALATABLE, WIDER

SCHEMA = "weekly_epi@1"
CASES = 731_457  # distinctive: a released cell near it would show in a text scan
PROVINCES = ReleaseQuery(
    schema_id=SCHEMA,
    measures=("cases",),
    group_by=("area:adm1", "week"),
    filters={"area": ("XA-P2",)},
    since="2026-W01",
    until="2026-W09",
    purpose="outbreak_response",
)
DISTRICTS = PROVINCES.model_copy(update={"group_by": ("area:adm2", "week")})
LATER = NOW + dt.timedelta(days=20)  # 2026-04-05: the second quarter
runner = CliRunner()


def history(node: Node) -> list[pipeline.Release]:
    """Q1: a release, the same again, a refusal, an escalation proposed, refused once and
    approved; Q2: one more release."""
    install_policy(node, edited_policy(ESCALATABLE))
    rows = weekly(("XA-P1-D1", "XA-P2-D1", "XA-P2-D2"), range(1, 9), cases=CASES)
    push(node, agency(node), SCHEMA, rows)
    made = [pipeline.release(node, partner_id="XB", query=PROVINCES, now=NOW)]
    made.append(pipeline.release(node, partner_id="XB", query=PROVINCES, now=NOW))
    with pytest.raises(pipeline.PolicyDeniedError):
        pipeline.release(node, partner_id="XB", query=DISTRICTS, now=NOW)
    alice, _ = tokens.issue_token(node.engine, name="alice", role="operator", schemas=(), now=NOW)
    bob, _ = tokens.issue_token(node.engine, name="bob", role="operator", schemas=(), now=NOW)
    number = escalations.propose(
        node.engine,
        node.policy,
        operator=alice,
        proposal=Proposal("XB-epi-2026", ("XB",), WIDER, 48),
        reason="cholera crossed the border at XA-P2",
        now=NOW,
    ).id
    with pytest.raises(escalations.EscalationRefusedError):
        escalations.approve(node.engine, node.policy, operator=alice, escalation_id=number, now=NOW)
    escalations.approve(node.engine, node.policy, operator=bob, escalation_id=number, now=NOW)
    later = PROVINCES.model_copy(update={"until": "2026-W12"})
    made.append(pipeline.release(node, partner_id="XB", query=later, now=LATER))
    return made


@pytest.fixture
def made(node: Node) -> list[pipeline.Release]:
    return history(node)


def review(node: Node, period: str = "2026-Q1") -> dict[str, Any]:
    signed = checkpoint_store.sign(node.engine, node.key.private_key, now=LATER)
    head = transparency.Head.of_signed(signed)
    return transparency.review_of(
        transparency.node_entries(node, head),
        node_id="XA",
        period=Period.parse(period),
        checkpoint=head,
        policy=node.policy,
    )


def test_the_page_folds_in_only_what_was_signed_since_and_agrees_with_a_fresh_review(
    node: Node, made: list[pipeline.Release]
) -> None:
    checkpoint_store.sign(node.engine, node.key.private_key, now=LATER)
    before = review_for(node, Period.parse("2026-Q2"))
    assert before is not None
    more = PROVINCES.model_copy(update={"filters": {"area": ("XA-P1",)}})
    made.append(pipeline.release(node, partner_id="XB", query=more, now=LATER))
    signed = checkpoint_store.sign(node.engine, node.key.private_key, now=LATER)
    after = review_for(node, Period.parse("2026-Q2"))
    head = transparency.Head.of_signed(signed)
    fresh = transparency.review_of(
        transparency.node_entries(node, head),
        node_id="XA",
        period=Period.parse("2026-Q2"),
        checkpoint=head,
        policy=node.policy,
    )
    assert after == fresh
    assert [f["releases"] for f in after["flows"]] == [f["releases"] + 1 for f in before["flows"]]


def test_periods_parse_to_utc_bounds_and_refuse_anything_else() -> None:
    q4 = Period.parse("2026-Q4")
    assert (q4.start, q4.end) == (
        dt.datetime(2026, 10, 1, tzinfo=dt.UTC),
        dt.datetime(2027, 1, 1, tzinfo=dt.UTC),
    )
    assert Period.parse("2026-12").end == dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    assert Period.parse("2026").start == dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert Period.parse("2026-Q1").before().name == "2025-Q4"
    assert Period.parse("2026-01").before().name == "2025-12"
    assert Period.quarter_of(NOW).name == "2026-Q1"
    for bad in ("2026-Q0", "2026-Q5", "2026-13", "26", "Q4", "2026-W01", "", "0000"):
        with pytest.raises(PeriodError, match="write a year"):
            Period.parse(bad)


def test_exact_figures_for_a_small_history(node: Node, made: list[pipeline.Release]) -> None:
    q1 = review(node)
    assert q1["flows"] == [
        {
            "partner": "XB",
            "schema": SCHEMA,
            "releases": 1,
            "replayed": 1,
            "refusals": {"agreement XB-epi-2026": 1},
            "epsilon_spent_micro": 500_000,
        }
    ]
    assert q1["escalations"] == [
        {"schema": SCHEMA, "proposed": 1, "refused": 1, "approved": 1, "revoked": 0, "expired": 0}
    ]
    (approved,) = q1["approved_escalations"]
    assert approved == {
        "id": approved["id"],
        "schema": SCHEMA,
        "start": "2026-03-16T12:00:00.000000Z",
        "end": "2026-03-18T12:00:00.000000Z",
    }
    partner = {(b["scope"], b["partner"]): b for b in q1["budgets"] if b["schema"] == SCHEMA}
    assert partner[("partner", "XB")] == {
        "scope": "partner",
        "partner": "XB",
        "schema": SCHEMA,
        "period": "2026",
        "cap_micro": 10_000_000,
        "spent_micro": 500_000,  # the Q2 release is after the period: not yet spent
    }
    assert partner[("global", "*")]["spent_micro"] == 500_000
    assert q1["budgets_as_of"] == "2026-03-31T23:59:59.999999Z"
    q2 = review(node, "2026-Q2")
    assert [(f["releases"], f["epsilon_spent_micro"]) for f in q2["flows"]] == [(1, 500_000)]
    assert q2["escalations"] == []
    assert [e["id"] for e in q2["approved_escalations"]] == []
    year = review(node, "2026")
    assert year["flows"][0]["releases"] == 2
    xb = [
        b["spent_micro"] for b in year["budgets"] if (b["partner"], b["schema"]) == ("XB", SCHEMA)
    ]
    assert xb == [1_000_000]


def test_escalation_entries_name_their_schema(node: Node, made: list[pipeline.Release]) -> None:
    with node.engine.connect() as conn:
        rows = [json.loads(bytes(r)) for r in conn.execute(select(audit_entries.c.entry)).scalars()]
    steps = [e for e in rows if e["action"].startswith("escalation.")]
    assert len(steps) == 3
    assert {e["schema"] for e in steps} == {SCHEMA}


def released_values(made: list[pipeline.Release]) -> set[str]:
    values = {
        str(value)
        for release in made
        for cell in release.as_document()["cells"]
        for measure in cell.values()
        if isinstance(measure, dict) and isinstance(value := measure.get("value"), int)
        if value >= 100_000
    }
    assert len(values) >= 2, "some released values were large enough to scan for"
    return values


def assert_no_data(text: str, made: list[pipeline.Release]) -> None:
    for value in released_values(made):
        assert value not in text
        assert f"{int(value):,}" not in text
    for secret in ("XA-P2", "cholera", "outbreak_response", "alice", "bob", "sha256:" + "0" * 4):
        assert secret not in text
    assert "request_digest" not in text and "reason" not in text


def test_a_review_never_holds_a_released_value_or_a_filter(
    node: Node, made: list[pipeline.Release]
) -> None:
    for period in ("2026-Q1", "2026-Q2", "2026"):
        assert_no_data(json.dumps(review(node, period)), made)


# --- the CLI: write, verify, refuse -------------------------------------------------------


def run(*args: str | Path) -> Any:
    return runner.invoke(cli, [str(a) for a in args])


@pytest.fixture
def signed(node: Node, made: list[pipeline.Release], tmp_path: Path) -> Iterator[dict[str, Path]]:
    directory = node.settings.directory
    out, export, key = tmp_path / "q1.json", tmp_path / "export.jsonl", tmp_path / "key.pem"
    written = run("report", "transparency", directory, "--period", "2026-Q1", "--out", out)
    assert written.exit_code == 0, written.output
    exported = run("audit", "export", directory, "--out", export)
    assert exported.exit_code == 0, exported.output
    key.write_bytes(
        node.key.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    yield {"dir": directory, "review": out, "export": export, "key": key}


def verify(paths: dict[str, Path], *extra: str | Path) -> Any:
    return run(
        "report", "transparency", "--verify", paths["review"],
        "--export", paths["export"], "--public-key", paths["key"], *extra,
    )  # fmt: skip


def test_the_cli_writes_a_signed_review_that_recomputes_from_an_export(
    node: Node, signed: dict[str, Path], made: list[pipeline.Release]
) -> None:
    document = json.loads(signed["review"].read_text())
    assert document["signature"]["alg"] == "ed25519"
    assert document["signature"]["key_id"] == key_id(node.key.public_key)
    body = document["review"]
    assert body["type"] == "crisis-exchange/transparency-review/v1"
    assert body["policy_hash"] == node.policy.hash
    assert body["flows"][0]["releases"] == 1
    assert_no_data(signed["review"].read_text(), made)
    checked = verify(signed)
    assert checked.exit_code == 0, checked.output
    assert checked.output.startswith("OK: ") and "caps NOT checked" in checked.output
    with_policy = verify(signed, "--policy", node.settings.policy_file)
    assert with_policy.exit_code == 0, with_policy.output
    assert "caps and policy hash checked" in with_policy.output


def test_a_tampered_figure_fails_naming_it(node: Node, signed: dict[str, Path]) -> None:
    document = json.loads(signed["review"].read_text())
    document["review"]["flows"][0]["releases"] = 7
    signed["review"].write_text(json.dumps(document))
    failed = verify(signed)
    assert failed.exit_code == 1
    assert "signature does not verify" in failed.output
    # re-signed by the node itself, the figure is still not what the log gives
    resigned = transparency_check.sign(document["review"], node.key)
    signed["review"].write_text(json.dumps(resigned))
    failed = verify(signed)
    assert failed.exit_code == 1
    assert f"review.flows[XB {SCHEMA}].releases: the review says 7, the log gives 1" in (
        failed.output
    )


def test_a_cap_other_than_the_policy_s_fails_with_the_policy_only(
    node: Node, signed: dict[str, Path]
) -> None:
    document = json.loads(signed["review"].read_text())
    document["review"]["budgets"][0]["cap_micro"] += 1
    signed["review"].write_text(json.dumps(transparency_check.sign(document["review"], node.key)))
    assert verify(signed).exit_code == 0  # the caps are the review's word without --policy
    failed = verify(signed, "--policy", node.settings.policy_file)
    assert failed.exit_code == 1
    assert ".cap_micro: the review says" in failed.output


def test_a_review_signed_by_a_key_the_export_does_not_trust_fails(
    node: Node, signed: dict[str, Path]
) -> None:
    document = json.loads(signed["review"].read_text())
    stranger = Ed25519PrivateKey.generate()
    forged = transparency_check.sign(
        document["review"], NodeKey(key_id(stranger.public_key()), stranger)
    )
    signed["review"].write_text(json.dumps(forged))
    failed = verify(signed)
    assert failed.exit_code == 1
    assert "which the export does not trust" in failed.output


def test_an_export_without_the_named_checkpoint_fails(
    node: Node, signed: dict[str, Path], tmp_path: Path
) -> None:
    pipeline.release(node, partner_id="XB", query=PROVINCES, now=NOW)  # one more entry
    newer = tmp_path / "newer.json"
    written = run("report", "transparency", signed["dir"], "--period", "2026-Q1", "--out", newer)
    assert written.exit_code == 0, written.output
    failed = verify({**signed, "review": newer})  # the export is older than the review
    assert failed.exit_code == 1
    assert "the export holds no checkpoint of tree size" in failed.output


def test_a_tampered_log_makes_the_cli_refuse(node: Node, made: Any, tmp_path: Path) -> None:
    checkpoint_store.sign(node.engine, node.key.private_key, now=LATER)
    with node.engine.begin() as conn:
        rows = conn.execute(select(audit_entries.c.seq, audit_entries.c.entry)).all()
        seq, entry = next((q, bytes(e)) for q, e in rows if b'"epsilon_micro":500000' in e)
        changed = entry.replace(b'"epsilon_micro":500000', b'"epsilon_micro":100000')
        conn.execute(update(audit_entries).where(audit_entries.c.seq == seq).values(entry=changed))
    out = tmp_path / "review.json"
    refused = run(
        "report", "transparency", node.settings.directory, "--period", "2026-Q1", "--out", out
    )
    assert refused.exit_code == 1
    # the node refuses to open on a log changed behind its back; had it opened, the review
    # would refuse the log that does not verify: either way, nothing is written
    assert "refusing to serve" in refused.output or "does not verify" in refused.output
    assert "seq" in refused.output
    assert not out.exists()


def test_usage_errors_are_clear(node: Node, tmp_path: Path) -> None:
    both = run("report", "transparency", node.settings.directory, "--verify", tmp_path / "x")
    assert both.exit_code == 2 and "not both" in both.output
    neither = run("report", "transparency")
    assert neither.exit_code == 2
    no_period = run("report", "transparency", node.settings.directory)
    assert no_period.exit_code == 2 and "--period is required" in no_period.output
    bad = run("report", "transparency", node.settings.directory, "--period", "Q4")
    assert bad.exit_code == 2 and "write a year" in bad.output
    alone = run("report", "transparency", "--verify", tmp_path / "x")
    assert alone.exit_code == 2 and "--export" in alone.output


def test_the_page_and_the_cli_give_the_same_figures(
    node: Node, settings: NodeSettings, made: list[pipeline.Release], tmp_path: Path
) -> None:
    chosen = settings.model_copy(update={"public_transparency": True})
    public = Node.open(chosen)
    try:
        with TestClient(create_app(chosen, node=public)) as client:
            out = tmp_path / "q1.json"
            written = run(
                "report", "transparency", chosen.directory, "--period", "2026-Q1", "--out", out
            )
            assert written.exit_code == 0, written.output
            page = client.get("/ui/transparency?period=2026-Q1", headers={"Accept-Language": "en"})
            from_page = review_for(public, Period.parse("2026-Q1"))
    finally:
        public.close()
    from_cli = json.loads(out.read_text())["review"]
    assert from_page == from_cli  # the same checkpoint, the same figures
    assert page.status_code == 200
    assert_no_data(page.text, made)
    assert f"checkpoint covering {from_cli['checkpoint']['tree_size']:,} entries" in page.text
