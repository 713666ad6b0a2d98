"""The auditor's pages: the log with filters and keyset paging, an entry with its proof
checked (and refused when anything was tampered with), checkpoints, witnesses, the export
an offline verifier accepts, roles kept out, and markup from the log escaped."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from markupsafe import escape
from sqlalchemy import update
from starlette.testclient import TestClient
from typer.testing import CliRunner

from exchange.cli import app as cli
from nodes import peers
from nodes.audit import browse, checkpoint_store, reading, witness
from nodes.audit.checkpoint import sign_checkpoint
from nodes.audit.log import append
from nodes.audit.tables import audit_entries
from nodes.database import writing
from nodes.identity import public_key_text
from nodes.node import Node
from tests.ui_support import issue, sign_in, ui_client

PAGES = (
    "/ui/audit",
    "/ui/audit/entries/0",
    "/ui/audit/checkpoints",
    "/ui/audit/witnesses",
    "/ui/audit/export",
)
DAY = dt.datetime(2025, 3, 1, 12, tzinfo=dt.UTC)
_SEQ = re.compile(r'href="/ui/audit/entries/(\d+)"')
_OLDER = re.compile(r'href="(/ui/audit\?[^"]*)" rel="next"')
_NEWER = re.compile(r'href="(/ui/audit\?[^"]*)" rel="prev"')


def seqs(html: str) -> list[int]:
    return [int(s) for s in _SEQ.findall(html)]


def link(pattern: re.Pattern[str], html: str) -> str | None:
    found = pattern.search(html)
    return None if found is None else found.group(1).replace("&amp;", "&")


def record(node: Node, count: int, **fields: Any) -> list[int]:
    """Append ``count`` entries; ``fields`` may be callables of the index."""
    made = []
    with writing(node.engine) as conn:
        for i in range(count):
            values: dict[str, Any] = {
                "actor": "token:moh",
                "role": "agency",
                "action": "report.push",
                "resource": f"report:{i}",
                "outcome": "allowed",
                "reason": "stored",
                "now": DAY,
            }
            values.update({k: v(i) if callable(v) else v for k, v in fields.items()})
            made.append(append(conn, **values))
    return made


def sign(node: Node) -> None:
    checkpoint_store.sign(node.engine, node.key.private_key, now=dt.datetime.now(dt.UTC))


@pytest.fixture
def auditor(client: TestClient, node: Node) -> TestClient:
    ui_client(client)
    sign_in(client, issue(node, "auditor", name="ombudsman"))
    return client


@pytest.fixture
def mixed(node: Node) -> dict[str, list[int]]:
    """A log of 40 entries, the first 24 under a checkpoint (read from the index) and the
    rest after it (read one by one): every filter is checked on both paths."""

    def kind(i: int) -> str:
        return "release.request" if i % 2 else "report.push"

    made = record(
        node,
        24,
        action=kind,
        outcome=lambda i: "denied" if i % 3 == 0 else "allowed",
        actor=lambda i: "token:ana" if i % 4 == 0 else "token:moh",
        now=lambda i: DAY + dt.timedelta(days=i % 5),
    )
    sign(node)
    made += record(
        node,
        16,
        action=kind,
        outcome=lambda i: "denied" if i % 3 == 0 else "allowed",
        actor=lambda i: "token:ana" if i % 4 == 0 else "token:moh",
        now=lambda i: DAY + dt.timedelta(days=i % 5),
    )
    groups: dict[str, list[int]] = {"all": made}
    for n, seq in enumerate(made):
        i = n % 24 if n < 24 else n - 24
        groups.setdefault(kind(i), []).append(seq)
        groups.setdefault("denied" if i % 3 == 0 else "allowed", []).append(seq)
        groups.setdefault("ana" if i % 4 == 0 else "moh", []).append(seq)
        groups.setdefault(f"day{i % 5}", []).append(seq)
    return groups


def newest_first(found: list[int]) -> list[int]:
    return sorted(found, reverse=True)


def test_each_filter_narrows_the_rows_and_filters_combine(
    auditor: TestClient, mixed: dict[str, list[int]]
) -> None:
    def shown(query: str) -> list[int]:
        page = auditor.get(f"/ui/audit?{query}")
        assert page.status_code == 200, page.text
        return seqs(page.text)

    everything = shown("")
    assert set(mixed["all"]) <= set(everything)  # the sign-in's own entries come too
    assert shown("action=release.request") == newest_first(mixed["release.request"])
    assert shown("outcome=denied") == newest_first(mixed["denied"])
    assert shown("actor=token:ana") == newest_first(mixed["ana"])
    assert shown("since=2025-03-03&until=2025-03-03") == newest_first(mixed["day2"])
    assert shown("since=2025-03-04&until=2025-03-10") == newest_first(mixed["day3"] + mixed["day4"])
    both = set(mixed["release.request"]) & set(mixed["denied"]) & set(mixed["moh"])
    combined = shown("action=release.request&outcome=denied&actor=token:moh&since=&until=")
    assert combined == newest_first(list(both))
    assert 0 < len(combined) < len(mixed["denied"])
    assert shown("action=peer.flagged") == []
    empty = auditor.get("/ui/audit?outcome=flagged")
    assert "No entry matches these filters." in empty.text


def test_the_filter_form_keeps_what_was_chosen(
    auditor: TestClient, mixed: dict[str, list[int]]
) -> None:
    page = auditor.get("/ui/audit?action=release.request&outcome=denied&since=2025-03-02").text
    assert '<option value="release.request" selected>' in page
    assert '<option value="denied" selected>' in page
    assert 'name="since" value="2025-03-02"' in page
    assert 'href="/ui/audit">Clear the filters' in page


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("since=yesterday", "since", "Enter a date like 2025-03-01."),
        ("since=2025-03-05&until=2025-03-01", "until", "must not be before its start"),
        ("action=drop.tables", "action", "Choose an action from the list."),
        ("outcome=maybe", "outcome", "Choose an outcome from the list."),
    ],
)
def test_a_bad_filter_is_shown_beside_its_field_and_nothing_is_listed(
    auditor: TestClient, query: str, field: str, message: str
) -> None:
    page = auditor.get(f"/ui/audit?{query}")
    assert page.status_code == 400
    assert f'<a href="#{field}">' in page.text
    assert f'id="{field}-error"' in page.text
    assert message in page.text
    assert 'id="entries"' not in page.text


def test_an_unknown_query_parameter_is_refused(auditor: TestClient) -> None:
    page = auditor.get("/ui/audit?acton=release.request")
    assert page.status_code in (400, 422)
    assert 'id="entries"' not in page.text


def test_paging_older_then_newer_shows_every_entry_once_in_order(
    auditor: TestClient, node: Node
) -> None:
    made = record(node, 70, action="release.request", outcome="denied")
    sign(node)
    made += record(node, 60, action="release.request", outcome="denied")
    query = "/ui/audit?action=release.request&outcome=denied"
    pages: list[list[int]] = []
    html = auditor.get(query).text
    assert link(_NEWER, html) is None
    while True:
        pages.append(seqs(html))
        older = link(_OLDER, html)
        if older is None:
            break
        assert "action=release.request" in older
        assert "outcome=denied" in older
        html = auditor.get(older).text
    assert [len(p) for p in pages] == [50, 50, 30]
    flat = [s for p in pages for s in p]
    assert flat == newest_first(made)  # none twice, none skipped, newest first
    back = link(_NEWER, html)
    assert back is not None
    second = auditor.get(back).text
    assert seqs(second) == pages[1]
    first_again = link(_NEWER, second)
    assert first_again is not None
    assert seqs(auditor.get(first_again).text) == pages[0]


def test_paging_without_filters_uses_seq_cursors(auditor: TestClient, node: Node) -> None:
    record(node, 120)
    first = auditor.get("/ui/audit").text
    older = link(_OLDER, first)
    assert older is not None
    assert older == f"/ui/audit?before={seqs(first)[-1]}"
    second = seqs(auditor.get(older).text)
    assert second[0] == seqs(first)[-1] - 1
    assert len(second) == 50


def test_an_entry_shows_every_field_and_its_proof_verified(auditor: TestClient, node: Node) -> None:
    (seq,) = record(node, 1, action="release.request", outcome="denied", reason="red line")
    sign(node)
    page = auditor.get(f"/ui/audit/entries/{seq}")
    assert page.status_code == 200
    text = page.text.replace("<wbr>", "")
    assert 'id="proof-status"' in page.text
    assert "<h2>Verified</h2>" in page.text
    assert "NOT verified" not in page.text
    for label in (
        "Sequence number",
        "Actor",
        "Resource",
        "Reason",
        "Leaf hash of the entry before",
    ):
        assert f"<dt>{label}</dt>" in page.text
    proof = reading.inclusion(node.engine, seq=seq)
    assert proof.root_hash.hex() in page.text
    for sibling in proof.proof:
        assert sibling.hex() in page.text
    stored = browse.stored_entry(node.engine, seq).data.decode()
    assert str(escape(stored)) in text  # the exact bytes stored, escaped


def test_an_entry_newer_than_the_latest_checkpoint_is_not_yet_covered(
    auditor: TestClient, node: Node
) -> None:
    sign(node)
    (seq,) = record(node, 1)
    page = auditor.get(f"/ui/audit/entries/{seq}").text
    assert "Not yet covered by a checkpoint" in page
    assert "<h2>Verified</h2>" not in page
    assert "NOT verified" not in page


def test_an_entry_changed_after_it_was_recorded_is_not_verified(
    auditor: TestClient, node: Node
) -> None:
    (seq,) = record(node, 1, outcome="denied", reason="refused")
    sign(node)
    with writing(node.engine) as conn:
        stored = conn.execute(audit_entries.select().where(audit_entries.c.seq == seq)).one()
        forged = bytes(stored.entry).replace(b'"denied"', b'"allowed"')
        conn.execute(update(audit_entries).where(audit_entries.c.seq == seq).values(entry=forged))
    page = auditor.get(f"/ui/audit/entries/{seq}").text
    assert "NOT verified" in page
    assert "do not hash to the leaf" in page
    assert "<h2>Verified</h2>" not in page


def test_a_tampered_proof_is_not_verified(
    auditor: TestClient, node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    record(node, 9)
    sign(node)
    genuine = reading.inclusion

    def forged(engine: Any, *, seq: int, tree_size: int | None = None) -> reading.InclusionProof:
        real = genuine(engine, seq=seq, tree_size=tree_size)
        first = bytes([real.proof[0][0] ^ 1]) + real.proof[0][1:]
        return reading.InclusionProof(
            seq=real.seq,
            tree_size=real.tree_size,
            leaf_hash=real.leaf_hash,
            proof=[first, *real.proof[1:]],
            root_hash=real.root_hash,
        )

    monkeypatch.setattr(reading, "inclusion", forged)
    page = auditor.get("/ui/audit/entries/3").text
    assert "NOT verified" in page
    assert "does not lead to the root hash the checkpoint signed" in page


def test_a_checkpoint_not_signed_by_the_node_is_not_verified(
    auditor: TestClient, node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    record(node, 5)
    real = checkpoint_store.sign(node.engine, node.key.private_key, now=dt.datetime.now(dt.UTC))
    impostor = sign_checkpoint(
        Ed25519PrivateKey.generate(),
        tree_size=real.checkpoint.tree_size,
        root_hash=bytes.fromhex(real.checkpoint.root_hash),
        time=real.checkpoint.time,
        node_id="XA",
        key_id=real.checkpoint.key_id,  # claims the node's key
    )
    monkeypatch.setattr(reading, "checkpoint", lambda *_a, **_k: impostor)
    page = auditor.get("/ui/audit/entries/2").text
    assert "NOT verified" in page
    assert "signature does not verify with this node" in page


def test_an_unknown_entry_is_a_404_page(auditor: TestClient) -> None:
    page = auditor.get("/ui/audit/entries/999999")
    assert page.status_code == 404
    assert "no entry number 999999" in page.text


def test_the_checkpoint_history_lists_each_signed_checkpoint(
    auditor: TestClient, node: Node
) -> None:
    signed = []
    for _ in range(3):
        record(node, 2)
        signed.append(
            checkpoint_store.sign(node.engine, node.key.private_key, now=dt.datetime.now(dt.UTC))
        )
    page = auditor.get("/ui/audit/checkpoints").text.replace("<wbr>", "")
    positions = [page.index(s.checkpoint.root_hash) for s in signed]
    assert positions == sorted(positions, reverse=True)  # newest first
    assert node.key.kid in page
    assert "this node&#39;s log never lost entries" in page or "never lost entries" in page


def _peer(node: Node, peer_id: str, name: str) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    peers.add_peer(
        node.engine,
        peer_id=peer_id,
        name=name,
        url="http://127.0.0.1:9",
        keys=[peers.NewKey(public_key=public_key_text(key.public_key()))],
        now=dt.datetime.now(dt.UTC),
    )
    return key


def _shows(node: Node, peer_id: str, key: Ed25519PrivateKey, size: int, root: bytes) -> str:
    line = sign_checkpoint(
        key, tree_size=size, root_hash=root, time=dt.datetime.now(dt.UTC), node_id=peer_id
    ).to_line()
    with writing(node.engine) as conn:
        found = witness.record_peer_checkpoint(
            conn,
            peer_id=peer_id,
            public_key=key.public_key(),
            line=line,
            proof=None,
            now=dt.datetime.now(dt.UTC),
        )
    return found.verdict


def test_the_witness_page_shows_each_peer_its_last_accepted_checkpoint_and_flags(
    auditor: TestClient, node: Node
) -> None:
    xb = _peer(node, "XB", "<i>Kingdom of XB</i>")
    xc = _peer(node, "XC", "Union of XC")
    _peer(node, "XD", "Isles of XD")
    assert _shows(node, "XB", xb, 7, b"\x07" * 32) == "first"
    assert _shows(node, "XC", xc, 5, b"\x05" * 32) == "first"
    assert _shows(node, "XC", xc, 5, b"\x06" * 32) == "flagged"  # two roots for one size
    page = auditor.get("/ui/audit/witnesses").text.replace("<wbr>", "")
    rows = {
        m.group(1): m.group(2)
        for m in re.finditer(r'<bdi class="code">(X[BCD])</bdi>(.*?)</tr>', page, re.S)
    }
    assert "consistent" in rows["XB"]
    assert ("07" * 32) in rows["XB"]
    assert "flagged" in rows["XC"]
    assert ("05" * 32) in rows["XC"]  # the last one it accepted, not the conflicting one
    assert "no checkpoint seen yet" in rows["XD"]
    assert "Evidence against flagged peers" in page
    assert "two different roots signed for tree size 5" in page
    assert ("06" * 32) in page  # the signed evidence
    assert "<i>Kingdom" not in page
    assert "&lt;i&gt;Kingdom of XB&lt;/i&gt;" in page


def test_the_witness_page_without_peers_says_so(auditor: TestClient) -> None:
    assert "This node has no peers." in auditor.get("/ui/audit/witnesses").text


def test_the_export_downloaded_from_the_page_verifies_offline_and_matches_the_api(
    client: TestClient, node: Node, tmp_path: Path
) -> None:
    ui_client(client)
    secret = issue(node, "auditor", name="ombudsman")
    sign_in(client, secret)
    record(node, 30)
    sign(node)
    record(node, 5)
    log = client.get("/ui/audit").text
    assert 'href="/ui/audit/export" download' in log
    answer = client.get("/ui/audit/export")
    assert answer.status_code == 200
    size = int(answer.headers["audit-tree-size"])
    assert answer.headers["content-disposition"] == f'attachment; filename="audit-XA-{size}.jsonl"'
    assert answer.headers["content-type"].startswith("application/jsonl")
    exported = tmp_path / "page.jsonl"
    exported.write_bytes(answer.content)
    key = tmp_path / "xa.pem"
    key.write_bytes(
        node.key.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    result = CliRunner().invoke(
        cli, ["audit", "verify", str(exported), "--public-key", str(key)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith("OK")
    assert f"size {size}" in result.output
    # the export records itself, by this auditor's token, like the API's
    last_entry = [line for line in answer.content.splitlines() if b'"seq":' in line][-1]
    assert b'"action":"audit.export"' in last_entry
    assert b'"actor":"token:ombudsman"' in last_entry
    # The API's export, taken after, holds the page's bytes first, then only what came since
    # (its own audit.export entry and the checkpoint covering it).
    api = client.get("/v1/audit/export", headers={"Authorization": f"Bearer {secret}"})
    assert api.status_code == 200
    assert api.content.startswith(answer.content)
    added = api.content[len(answer.content) :].splitlines()
    entries = [line for line in added if not line.startswith(b'{"checkpoint":')]
    assert all(b'"action":"audit.export"' in line for line in entries)
    assert len(entries) == int(api.headers["audit-tree-size"]) - size


@pytest.mark.parametrize("role", ["agency", "analyst", "operator"])
def test_other_roles_get_403_on_every_auditor_page(
    client: TestClient, node: Node, role: Any
) -> None:
    ui_client(client)
    record(node, 1)
    sign(node)
    sign_in(client, issue(node, role))
    before = reading.entries(node.engine, limit=1000).log_size
    for url in PAGES:
        page = client.get(url, follow_redirects=False)
        assert page.status_code == 403, url
        assert "This page is for the auditor role" in page.text, url
        assert "audit.export" not in page.text
    forbidden = reading.entries(node.engine, action="audit.export", limit=10).entries
    assert forbidden == []  # no export was taken
    assert reading.entries(node.engine, limit=1000).log_size == before + len(PAGES)


def test_without_a_session_every_auditor_page_sends_to_sign_in(client: TestClient) -> None:
    ui_client(client)
    for url in PAGES:
        page = client.get(url, follow_redirects=False)
        assert page.status_code == 303, url
        assert page.headers["location"].startswith("/ui/sign-in?next="), url


@pytest.fixture
def injected(node: Node) -> Iterator[int]:
    """An entry whose actor (a token's name), resource and reason carry markup."""
    (seq,) = record(
        node,
        1,
        actor='token:<img src=x onerror="alert(1)">',
        resource='report:<svg onload="alert(2)">',
        reason="<script>alert(3)</script>",
    )
    sign(node)
    yield seq


def test_markup_from_the_log_is_escaped_on_the_table_and_the_detail(
    client: TestClient, node: Node, injected: int
) -> None:
    ui_client(client)
    sign_in(client, issue(node, "auditor", name="<b>bold auditor</b>"))
    for url in ("/ui/audit", f"/ui/audit/entries/{injected}"):
        html = client.get(url).text.replace("<wbr>", "")
        for raw in ("<img src=x", "<svg onload", "<script>alert(3)", "<b>bold auditor</b>"):
            assert raw not in html, (url, raw)
        assert "&lt;script&gt;alert(3)&lt;/script&gt;" in html, url
        assert "&lt;img src=x onerror=" in html, url
        assert "&lt;svg onload=" in html, url
        assert "&lt;b&gt;bold auditor&lt;/b&gt;" in html, url
    search = client.get("/ui/audit", params={"actor": "<b>x</b>"}).text
    assert "<b>x</b>" not in search
    assert 'value="&lt;b&gt;x&lt;/b&gt;"' in search


@pytest.mark.parametrize("language", ["fr", "es", "ar"])
def test_the_pages_speak_the_reader_language(
    auditor: TestClient, node: Node, language: str
) -> None:
    record(node, 3)
    sign(node)
    auditor.cookies.set("exchange_lang", language, path="/ui")
    for url in PAGES[:4]:
        page = auditor.get(url)
        assert page.status_code == 200, url
        assert page.headers["content-language"] == language
        assert f'lang="{language}"' in page.text
    if language == "ar":
        assert 'dir="rtl"' in auditor.get("/ui/audit").text
