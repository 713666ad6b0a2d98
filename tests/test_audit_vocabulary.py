"""Issue 8 item 14: closed vocabularies, structured fields, format-1 entries still verify, and
``exchange audit entries|summary`` for auditors at a terminal."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from exchange.cli import app
from nodes.audit import log, verifier, vocabulary
from nodes.audit.checkpoint import sign_checkpoint
from nodes.audit.entry import GENESIS_PREV, AuditEntry
from nodes.audit.errors import InvalidEntryError
from nodes.audit.export_format import build_export
from nodes.audit.merkle import MerkleTree, leaf_hash
from nodes.database import writing
from nodes.node import Node
from tests.conftest import now

runner = CliRunner()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("outcome", "done"),
        ("outcome", "received"),
        ("action", "pull"),
        ("role", "tester"),
        ("actor", "peer:XC"),
        ("actor", "moh-surveillance"),
        ("resource", "release/1"),
    ],
)
def test_values_outside_the_vocabularies_are_refused(node: Node, field: str, value: str) -> None:
    fields = {
        "actor": "partner:XB",
        "role": "partner",
        "action": "release",
        "resource": "release:1",
        "outcome": "allowed",
        "reason": "",
    }
    with pytest.raises(InvalidEntryError), writing(node.engine) as conn:
        log.append(conn, **{**fields, field: value}, now=now())  # type: ignore[arg-type]


def test_a_release_entry_carries_partner_schema_epsilon_and_policy_hash(node: Node) -> None:
    with writing(node.engine) as conn:
        log.append(
            conn,
            actor="partner:XB",
            role="partner",
            action="release",
            resource="release:7",
            outcome="allowed",
            reason="rule eu-weekly",
            partner="XB",
            schema="weekly_epi@1",
            epsilon_micro=250_000,
            policy_hash="sha256:" + "ab" * 32,
            now=now(),
        )
    from tests.audit_support import stored_entries

    entry = stored_entries(node.engine)[-1]
    assert (entry["partner"], entry["schema"], entry["epsilon_micro"]) == (
        "XB",
        "weekly_epi@1",
        250_000,
    )


def _legacy_export() -> tuple[bytes, Ed25519PrivateKey]:
    """Two format-1 entries (as written before the vocabularies) and a format-2 one."""
    key = Ed25519PrivateKey.generate()
    t = dt.datetime(2025, 3, 4, 5, 6, 7, tzinfo=dt.UTC)
    old = AuditEntry(
        seq=0, time=t, actor="peer:XC", role="partner", action="release.receive",
        resource="release:XC/1", outcome="received", reason="", policy_hash=None,
        request_digest=None, prev=GENESIS_PREV, node_id="XA", structured=False,
    ).to_bytes()  # fmt: skip
    cached = AuditEntry(
        seq=1, time=t, actor="partner:XB", role="partner", action="release",
        resource="release/1", outcome="cached", reason="", policy_hash=None,
        request_digest=None, prev=leaf_hash(old).hex(), node_id="XA", structured=False,
    ).to_bytes()  # fmt: skip
    new = AuditEntry(
        seq=2, time=t, actor="partner:XB", role="partner", action="release",
        resource="release:2", outcome="allowed", reason="", policy_hash=None,
        request_digest=None, prev=leaf_hash(cached).hex(), node_id="XA", partner="XB",
        schema="weekly_epi@1", epsilon_micro=100_000,
    ).to_bytes()  # fmt: skip
    data = [old, cached, new]
    root = MerkleTree([leaf_hash(d) for d in data]).root()
    signed = sign_checkpoint(key, tree_size=3, root_hash=root, time=t, node_id="XA")
    return build_export(data, [signed]), key


def test_format_1_entries_verify_beside_format_2_and_read_in_todays_words() -> None:
    export, key = _legacy_export()
    assert verifier.verify_export(export, key.public_key()).entries == 3
    lines = export.splitlines()[1:4]
    assert b'"epsilon_micro"' not in lines[0]
    assert b'"epsilon_micro":100000' in lines[2]
    assert AuditEntry.from_bytes(lines[0]).to_bytes() == lines[0]  # hashed as stored
    old, cached, new = (vocabulary.normalize(json.loads(line)) for line in lines)
    assert (old["outcome"], old["actor"], old["partner"], old["format"]) == (
        "allowed",
        "partner:XC",
        "XC",
        1,
    )
    assert (cached["outcome"], cached["resource"]) == ("replayed", "release:1")
    assert new["format"] == 2
    assert new["epsilon_micro"] == 100_000


def test_a_half_structured_entry_is_malformed() -> None:
    export, key = _legacy_export()
    broken = export.replace(b',"partner":"XB"', b"", 1)
    with pytest.raises(verifier.MalformedExportError):
        verifier.verify_export(broken, key.public_key())


def run(*args: str | Path, code: int = 0) -> str:
    result = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    assert result.exit_code == code, result.output
    return result.output


def test_the_cli_lists_filters_and_counts_entries(tmp_path: Path) -> None:
    directory = tmp_path / "xa"
    run("init", directory, "--node-id", "XA", "--name", "A")
    run("token", "create", directory, "--name", "ombudsman", "--role", "auditor")
    run("token", "create", directory, "--name", "moh", "--schema", "weekly_epi@1")
    run("token", "revoke", directory, "moh")
    listed = run("audit", "entries", directory, "--action", "token.issue", "--json")
    parsed = [json.loads(line) for line in listed.splitlines()]
    assert [e["resource"] for e in parsed] == ["token:ombudsman", "token:moh"]
    assert all(e["outcome"] == "allowed" and e["format"] == 2 for e in parsed)
    totals = run("audit", "summary", directory)
    assert "token.issue" in totals
    assert "token.revoke" in totals
    assert "3 entries" in totals
    assert "1 entries" in run("audit", "summary", directory, "--action", "token.revoke")
    run("audit", "entries", directory, "--since", "yesterday", code=2)


def _ruled_export() -> tuple[bytes, Ed25519PrivateKey]:
    """A format-1 entry, a format-2 refusal without ``rule`` (as written before it existed)
    and two format-2 refusals naming their rule."""
    key = Ed25519PrivateKey.generate()
    t = dt.datetime(2025, 3, 4, 5, 6, 7, tzinfo=dt.UTC)
    data: list[bytes] = []
    common = {"time": t, "actor": "partner:XB", "role": "partner", "action": "release",
              "resource": "schema:weekly_epi@1", "reason": "", "policy_hash": None,
              "request_digest": None, "node_id": "XA"}  # fmt: skip
    refusal = {"outcome": "denied", "partner": "XB", "schema": "weekly_epi@1", "epsilon_micro": 0}
    entries = [
        {"outcome": "rejected", "structured": False},
        refusal,
        {**refusal, "rule": "red line border-province"},
        {**refusal, "rule": "budget"},
    ]
    for seq, fields in enumerate(entries):
        prev = leaf_hash(data[-1]).hex() if data else GENESIS_PREV
        data.append(AuditEntry(seq=seq, prev=prev, **common, **fields).to_bytes())  # type: ignore[arg-type]
    root = MerkleTree([leaf_hash(d) for d in data]).root()
    signed = sign_checkpoint(key, tree_size=len(data), root_hash=root, time=t, node_id="XA")
    return build_export(data, [signed]), key


def test_entries_with_and_without_a_rule_verify_side_by_side() -> None:
    export, key = _ruled_export()
    assert verifier.verify_export(export, key.public_key()).entries == 4
    lines = export.splitlines()[1:5]
    assert b'"rule"' not in lines[1]  # unset: the key is absent, the bytes as before
    assert b'"role":"partner","rule":"red line border-province","schema"' in lines[2]
    for line in lines:
        assert AuditEntry.from_bytes(line).to_bytes() == line
    rules = [vocabulary.normalize(json.loads(line))["rule"] for line in lines]
    assert rules == [None, None, "red line border-province", "budget"]


def test_a_tampered_rule_is_detected() -> None:
    export, key = _ruled_export()
    tampered = export.replace(b'"rule":"red line border-province"', b'"rule":"budget"', 1)
    assert tampered != export
    with pytest.raises(verifier.EntryModifiedError, match="seq 2"):
        verifier.verify_export(tampered, key.public_key())


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b'"rule":"budget"', b'"rule":null'),  # a null rule is written as no key
        (b'"rule":"budget"', b'"rule":7'),
        # format 1 (seq 0) has no rule
        (b'"role":"partner","seq":0', b'"role":"partner","rule":"budget","seq":0'),
    ],
)
def test_a_malformed_rule_is_refused_by_the_verifier(old: bytes, new: bytes) -> None:
    export, key = _ruled_export()
    assert old in export
    with pytest.raises(verifier.MalformedExportError):
        verifier.verify_export(export.replace(old, new, 1), key.public_key())


def test_entry_bytes_with_a_null_rule_are_not_canonical() -> None:
    export, _key = _ruled_export()
    line = export.splitlines()[4].replace(b'"rule":"budget"', b'"rule":null')
    with pytest.raises(InvalidEntryError):
        AuditEntry.from_bytes(line)


@pytest.mark.parametrize(
    "rule", ["agreement", "red line", "because I said so", "budget ", "agreement XB epi", "x" * 200]
)
def test_a_rule_outside_its_closed_form_is_refused(node: Node, rule: str) -> None:
    with pytest.raises(InvalidEntryError), writing(node.engine) as conn:
        log.append(
            conn, actor="partner:XB", role="partner", action="release",
            resource="schema:weekly_epi@1", outcome="denied", reason="", partner="XB",
            schema="weekly_epi@1", epsilon_micro=0, rule=rule, now=now(),
        )  # fmt: skip


def test_the_cli_shows_and_filters_by_rule(tmp_path: Path) -> None:
    from exchange.cli.common import open_node

    directory = tmp_path / "xa"
    run("init", directory, "--node-id", "XA", "--name", "A")
    with open_node(directory) as opened, writing(opened.engine) as conn:
        for rule in ("red line border-province", "budget", "budget"):
            log.append(
                conn, actor="partner:XB", role="partner", action="release",
                resource="schema:weekly_epi@1", outcome="denied", reason="", partner="XB",
                schema="weekly_epi@1", epsilon_micro=0, rule=rule, now=now(),
            )  # fmt: skip
    listed = run("audit", "entries", directory, "--rule", "budget", "--json")
    assert [json.loads(line)["rule"] for line in listed.splitlines()] == ["budget", "budget"]
    assert "red line border-province" in run("audit", "entries", directory)
    totals = run("audit", "summary", directory, "--action", "release")
    assert "refused by rule" in totals
    rows = [line.replace("│", " ").split() for line in totals.splitlines()]
    assert ["XB", "budget", "2"] in rows
    assert ["XB", "red", "line", "border-province", "1"] in rows
