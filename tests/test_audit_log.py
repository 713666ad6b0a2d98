"""Appending: one entry per act, in the act's own transaction, gap-free under concurrency."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from nodes import reports, tokens
from nodes.audit import checkpoint_store, log
from nodes.audit.errors import InvalidEntryError, LogIntegrityError, LogNotInitializedError
from nodes.audit.merkle import MerkleTree, leaf_hash
from nodes.audit.startup import check_log, known_public_keys
from nodes.audit.tables import audit_entries, audit_head
from nodes.database import make_engine, writing
from nodes.node import Node
from nodes.tables import reports as reports_table
from tests.audit_support import add_entries, stored_bytes, stored_entries
from tests.conftest import now
from tests.samples import weekly_rows
from tests.test_push_api import PUSH, stored_counts


def test_append_returns_consecutive_seqs_and_chains_entries(node: Node) -> None:
    with writing(node.engine) as conn:
        first = log.append(
            conn,
            actor="operator:a",
            role="operator",
            action="token.issue",
            resource="token:r",
            outcome="allowed",
            reason="",
            policy_hash="sha256:" + "ab" * 32,
            request_digest="sha-256:cd",
            now=now(),
        )
        second = log.append(
            conn, actor="token:b", role="agency", action="report.push", resource="schema:r",
            outcome="denied", reason="why", now=now(),
        )  # fmt: skip
    assert (first, second) == (0, 1)
    data = stored_bytes(node.engine)
    assert stored_entries(node.engine)[0]["policy_hash"] == "sha256:" + "ab" * 32
    assert stored_entries(node.engine)[1]["prev"] == leaf_hash(data[0]).hex()
    head = log.head(node.engine)
    assert head.size == 2
    assert head.last_leaf == leaf_hash(data[1])
    assert head.node_id == "XA"


def test_a_rolled_back_act_takes_its_entry_and_its_seq_with_it(node: Node) -> None:
    add_entries(node.engine, 1)
    with pytest.raises(RuntimeError), writing(node.engine) as conn:
        log.append(
            conn, actor="node", role="node", action="policy.load", resource="policy:r",
            outcome="allowed", reason="", now=now(),
        )  # fmt: skip
        raise RuntimeError("the act failed after its entry was appended")
    add_entries(node.engine, 1, tag="after")
    assert [e["seq"] for e in stored_entries(node.engine)] == [0, 1]
    assert stored_entries(node.engine)[1]["resource"] == "key:filler-after0"


def test_a_malformed_entry_fails_the_whole_act(node: Node) -> None:
    with pytest.raises(InvalidEntryError), writing(node.engine) as conn:
        conn.execute(audit_head.update().values(node_id="XA"))  # some act's write
        log.append(
            conn, actor="operator:a\nb", role="operator", action="token.issue",
            resource="token:r", outcome="allowed", reason="", now=now(),
        )  # fmt: skip
    assert log.head(node.engine).size == 0


def test_append_before_initialize_is_refused(tmp_path: Any) -> None:
    from nodes import migrate

    engine = make_engine(f"sqlite:///{tmp_path / 'bare.sqlite3'}")
    migrate.upgrade(engine)
    with pytest.raises(LogNotInitializedError), writing(engine) as conn:
        log.append(
            conn, actor="node", role="node", action="policy.load", resource="policy:r",
            outcome="allowed", reason="", now=now(),
        )  # fmt: skip
    engine.dispose()


def test_a_database_holding_another_nodes_log_is_refused(node: Node) -> None:
    with pytest.raises(LogIntegrityError, match="audit log of node 'XA'"):
        log.initialize(node.engine, node_id="XB")


# --- the acts that exist today --------------------------------------------------------------


def test_a_push_logs_schema_report_rows_and_hash_never_content(
    client: TestClient, agency: dict[str, str], node: Node
) -> None:
    rows = weekly_rows()
    receipt = client.post(PUSH, json={"rows": rows}, headers=agency).json()
    push = stored_entries(node.engine)[-1]
    assert push["action"] == "report.push"
    assert push["outcome"] == "allowed"
    assert push["actor"] == "token:moh-surveillance"
    assert push["role"] == "agency"
    assert push["resource"] == f"report:{receipt['report_id']}"
    assert push["schema"] == "weekly_epi@1"
    assert push["partner"] is None
    assert push["request_digest"] == f"sha-256:{receipt['content_sha256']}"
    assert f"{len(rows)} rows" in push["reason"]
    raw = b"".join(stored_bytes(node.engine))
    assert b"XA-P1-D1" not in raw
    assert b"2026-W01" not in raw


def test_a_dry_run_and_an_invalid_push_leave_no_entry(
    client: TestClient, agency: dict[str, str], node: Node
) -> None:
    before = log.head(node.engine).size
    assert (
        client.post(
            f"{PUSH}?dry_run=true", json={"rows": weekly_rows()}, headers=agency
        ).status_code
        == 200
    )
    bad = weekly_rows()
    bad[0]["cases"] = -1
    assert client.post(PUSH, json={"rows": bad}, headers=agency).status_code == 422
    assert log.head(node.engine).size == before
    assert stored_counts(node) == (0, 0)


def test_a_push_that_fails_after_storing_rows_leaves_neither_rows_nor_entry(
    client: TestClient, agency: dict[str, str], node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = log.head(node.engine).size
    real = reports._log_push

    def log_then_fail(*args: Any, **kwargs: Any) -> None:
        real(*args, **kwargs)
        raise RuntimeError("disk full after the entry was written")

    monkeypatch.setattr(reports, "_log_push", log_then_fail)
    with pytest.raises(RuntimeError):
        client.post(PUSH, json={"rows": weekly_rows()}, headers=agency)
    assert stored_counts(node) == (0, 0)
    assert log.head(node.engine).size == before


def test_a_push_whose_entry_cannot_be_written_is_not_stored(
    client: TestClient, agency: dict[str, str], node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_args: Any, **_kwargs: Any) -> int:
        raise LogNotInitializedError("no log")

    monkeypatch.setattr(reports, "append", refuse)
    with pytest.raises(LogNotInitializedError):
        client.post(PUSH, json={"rows": weekly_rows()}, headers=agency)
    assert stored_counts(node) == (0, 0)


def test_an_idempotent_replay_is_logged_as_such(
    client: TestClient, agency: dict[str, str], node: Node
) -> None:
    headers = {**agency, "Idempotency-Key": "k1"}
    client.post(PUSH, json={"rows": weekly_rows()}, headers=headers)
    client.post(PUSH, json={"rows": weekly_rows()}, headers=headers)
    outcomes = [e["outcome"] for e in stored_entries(node.engine) if e["action"] == "report.push"]
    assert outcomes == ["allowed", "replayed"]


def test_a_push_outside_the_tokens_scope_is_logged_as_denied(
    client: TestClient, agency: dict[str, str], node: Node
) -> None:
    response = client.post("/v1/reports/hospital_capacity@1", json={"rows": []}, headers=agency)
    assert response.status_code == 403
    denied = stored_entries(node.engine)[-1]
    assert (denied["action"], denied["outcome"]) == ("report.push", "denied")
    assert denied["resource"] == "schema:hospital_capacity@1"


def test_token_issue_and_revoke_are_logged_without_the_secret(node: Node) -> None:
    _record, secret = tokens.issue_token(
        node.engine, name="lab", role="agency", schemas=("weekly_epi@1",), now=now(),
        actor="operator:alice",
    )  # fmt: skip
    tokens.revoke_token(node.engine, name="lab", now=now(), actor="operator:bob")
    issued, revoked = stored_entries(node.engine)[-2:]
    assert (issued["action"], issued["actor"], issued["resource"]) == (
        "token.issue", "operator:alice", "token:lab",
    )  # fmt: skip
    assert "weekly_epi@1" in issued["reason"]
    assert (revoked["action"], revoked["actor"]) == ("token.revoke", "operator:bob")
    raw = b"".join(stored_bytes(node.engine))
    assert secret.encode() not in raw
    assert tokens.secret_hash(secret).encode() not in raw


def test_a_token_that_cannot_be_issued_leaves_no_entry(node: Node) -> None:
    tokens.issue_token(node.engine, name="lab", role="auditor", schemas=(), now=now())
    size = log.head(node.engine).size
    with pytest.raises(Exception, match="exists already"):
        tokens.issue_token(node.engine, name="lab", role="auditor", schemas=(), now=now())
    assert log.head(node.engine).size == size


# --- concurrency ----------------------------------------------------------------------------


def run_threads(count: int, work: Callable[[int], None]) -> None:
    failures: list[BaseException] = []

    def guarded(i: int) -> None:
        try:
            work(i)
        except BaseException as exc:  # surfaced below
            failures.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures


def test_concurrent_appends_keep_seq_gap_free_and_the_tree_valid(node: Node) -> None:
    threads, each = 8, 25

    def work(i: int) -> None:
        for k in range(each):
            with writing(node.engine) as conn:
                log.append(
                    conn, actor=f"token:worker-{i}", role="agency", action="token.issue",
                    resource=f"token:item{k}", outcome="allowed", reason="", now=now(),
                )  # fmt: skip
            if k % 10 == 0:  # checkpoints signed while others append
                checkpoint_store.sign(node.engine, node.key.private_key, now=now())

    run_threads(threads, work)
    entries = stored_entries(node.engine)
    assert [e["seq"] for e in entries] == list(range(threads * each))
    data = stored_bytes(node.engine)
    for previous, entry in zip(data, entries[1:], strict=False):
        assert entry["prev"] == leaf_hash(previous).hex()
    final = checkpoint_store.sign(node.engine, node.key.private_key, now=now())
    assert final.checkpoint.root_hash == MerkleTree([leaf_hash(d) for d in data]).root().hex()
    status = check_log(node.engine, public_keys=known_public_keys(node.settings.keys_dir))
    assert status.entries == threads * each == status.checkpoint_size


def test_concurrent_rolled_back_appends_leave_no_gaps(node: Node) -> None:
    def work(i: int) -> None:
        for k in range(10):
            try:
                with writing(node.engine) as conn:
                    log.append(
                        conn, actor=f"token:w{i}", role="agency", action="token.issue",
                        resource=f"token:item{k}", outcome="allowed", reason="", now=now(),
                    )  # fmt: skip
                    if k % 3 == 0:
                        raise ValueError("act failed")
            except ValueError:
                pass

    run_threads(6, work)
    with node.engine.connect() as conn:
        seqs = conn.execute(select(audit_entries.c.seq).order_by(audit_entries.c.seq)).scalars()
        assert list(seqs) == list(range(6 * 6))
        assert conn.execute(select(func.count()).select_from(reports_table)).scalar_one() == 0
