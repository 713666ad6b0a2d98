"""The operator's pages: the node, inflow and outflow, budgets and peers (TestClient)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from fastapi.testclient import TestClient
from markupsafe import escape

from nodes import activity, ledger, peers, reports
from nodes.audit import log as audit_log
from nodes.audit import status as audit_status
from nodes.audit.summary import release_refusals
from nodes.database import reading, writing
from nodes.identity import key_id, public_key_text
from nodes.node import Node
from nodes.releases import pipeline, store
from nodes.tokens import TokenRecord
from policies.accounts import accounts_in_force
from policies.query import ReleaseQuery
from schemas.validation import from_json_rows
from tests.release_support import agency, install_policy, sample_policy_text, weekly
from tests.test_audit_witness import PeerLog, see
from tests.ui_support import issue, sign_in, ui_client

PAGES = ("/ui/operator", "/ui/operator/flows", "/ui/operator/budgets", "/ui/operator/peers")
#: The sample policy, with agreements that outlive the tests' real clock.
LONG_LIVED = sample_policy_text().replace("valid_until: 2026-12-31", "valid_until: 2099-12-31")
MARKUP = '<script>alert("x")</script>'
XB_CASES = ReleaseQuery(
    schema_id="weekly_epi@1", measures=("cases",), group_by=("area",), purpose="outbreak_response"
)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@pytest.fixture
def operator(client: TestClient, node: Node) -> TestClient:
    """``client`` signed in to the dashboard as an operator."""
    sign_in(ui_client(client), issue(node, "operator"))
    return client


def push_now(
    node: Node, rows: int, *, when: dt.datetime | None = None, token: TokenRecord | None = None
) -> reports.StoredReport:
    """A weekly_epi@1 report of ``rows`` rows, received ``when`` (default: now)."""
    batch = from_json_rows(
        node.registry.get("weekly_epi@1"),
        weekly(("XA-P1",), range(1, rows + 1)),
        node.validation,
    )
    return reports.store(
        node.engine,
        batch=batch,
        token=token or agency(node),
        idempotency_key=None,
        now=when or now(),
    )


def cell(html: str, element_id: str) -> str:
    """The text inside the element with ``id`` (tags stripped)."""
    found = re.search(rf'id="{element_id}"[^>]*>(.*?)</', html, re.S)
    assert found is not None, f"no element #{element_id}"
    return re.sub(r"<[^>]+>", "", found.group(1)).strip()


def rows_of(html: str, table_id: str) -> list[list[str]]:
    """The body rows of table ``table_id``, each a list of cell texts."""
    table = re.search(rf'<table id="{table_id}".*?<tbody>(.*?)</tbody>', html, re.S)
    assert table is not None, f"no table #{table_id}"
    out = []
    for row in re.findall(r"<tr>(.*?)</tr>", table.group(1), re.S):
        cells = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)
        out.append([" ".join(re.sub(r"<[^>]+>", " ", c).split()) for c in cells])
    return out


# The node page


def test_the_node_page_shows_the_key_id_partners_pin(operator: TestClient, node: Node) -> None:
    page = operator.get("/ui/operator")
    assert page.status_code == 200
    assert cell(page.text, "key-id") == key_id(node.key.public_key)
    assert public_key_text(node.key.public_key) in page.text
    assert cell(page.text, "node-id") == "XA"
    assert "Republic of XA" in page.text
    assert escape(node.settings.public_url) in page.text


def test_the_node_page_shows_readiness_and_the_audit_log_as_readyz_sees_it(
    operator: TestClient, node: Node
) -> None:
    page = operator.get("/ui/operator").text
    assert cell(page, "readiness") == "Ready"
    size = audit_status.summary(node.engine, now=now())["log_size"]
    assert size > 0  # the sign-in and the token were audited
    assert cell(page, "log-size") == f"{size:,}"
    assert "Database schema up to date" in page


def test_the_node_page_names_a_flagged_peer(operator: TestClient, node: Node) -> None:
    peer = PeerLog().grow(4)
    see(node, peer, peer.checkpoint(0))
    see(node, peer.fork(2), peer.fork(2).checkpoint(5))  # rolled back
    page = operator.get("/ui/operator").text
    assert "Peers caught with an inconsistent log" in page
    assert "rolled back" in page


# Inflow and outflow


def test_a_pushed_report_appears_in_the_inflow_with_its_rows(
    operator: TestClient, node: Node
) -> None:
    assert "No report arrived in these weeks." in operator.get("/ui/operator/flows").text
    stored = push_now(node, 7)
    page = operator.get("/ui/operator/flows").text
    year, week, _day = now().date().isocalendar()
    (row,) = rows_of(page, "inflow-table")
    assert row[0].startswith(f"{year}-W{week:02d}")
    assert "weekly_epi@1" in row[1]
    assert row[2:] == ["1", str(stored.rows), "0"]
    assert stored.rows == 7


def test_inflow_groups_reports_per_schema_and_week_in_sql(node: Node) -> None:
    monday = dt.datetime(2026, 11, 23, 0, 0, tzinfo=dt.UTC)
    token = agency(node)
    push_now(node, 2, when=monday, token=token)
    push_now(node, 3, when=monday + dt.timedelta(days=6, hours=23), token=token)  # same week
    push_now(node, 4, when=monday + dt.timedelta(days=7), token=token)  # the next one
    push_now(node, 5, when=monday - dt.timedelta(seconds=1), token=token)  # before: left out
    weeks = activity.inflow_by_week(node.engine, since=monday)
    assert [(w.iso_week, w.reports, w.rows) for w in weeks] == [
        ("2026-W49", 1, 4),
        ("2026-W48", 2, 5),
    ]
    assert weeks[1].week_start == monday.date()


def release_once(node: Node) -> None:
    install_policy(node, LONG_LIVED)
    pipeline.release(node, partner_id="XB", query=XB_CASES, now=now())


def refuse_once(node: Node, partner_id: str = "XD") -> None:
    with pytest.raises(pipeline.PolicyDeniedError):
        pipeline.release(node, partner_id=partner_id, query=XB_CASES, now=now())


def test_outflow_counts_releases_and_refusals_with_their_reasons(
    operator: TestClient, node: Node
) -> None:
    release_once(node)
    refuse_once(node)
    refuse_once(node)
    page = operator.get("/ui/operator/flows").text
    with reading(node.engine) as conn:
        assert store.counts(conn) == [("XB", "weekly_epi@1", "XB-epi-2026", 1)]
    (released,) = rows_of(page, "outflow-table")
    assert released[0] == "XB"
    assert released[2:] == ["XB-epi-2026", "1"]
    assert release_refusals(node.engine) == {("XD", "weekly_epi@1", "deny by default"): 2}
    (refused,) = rows_of(page, "refusals-table")
    assert refused[0] == "XD"
    assert refused[2:] == ["deny by default", "2"]
    examples = rows_of(page, "examples-table")
    assert len(examples) == 2
    assert all("no agreement lets XD receive weekly_epi@1" in row[3] for row in examples)
    assert cell(page, "refusals-total") == "2"


def test_the_newest_refusals_come_first_across_the_checkpoint(node: Node) -> None:
    install_policy(node, LONG_LIVED)
    for partner_id in ("XD", "XE", "XF"):
        refuse_once(node, partner_id)
    from nodes.audit import checkpoint_store

    checkpoint_store.sign(node.engine, node.key.private_key, now=now(), force=True)
    refuse_once(node, "XG")
    found = activity.recent_refusals(node.engine, limit=3)
    assert [r.partner for r in found] == ["XG", "XF", "XE"]
    assert all(r.rule == "deny by default" for r in found)
    assert [r.partner for r in activity.recent_refusals(node.engine, limit=10)] == [
        "XG",
        "XF",
        "XE",
        "XD",
    ]


def test_a_refusal_reason_is_escaped(operator: TestClient, node: Node) -> None:
    with writing(node.engine) as conn:
        audit_log.append(
            conn,
            actor="partner:XB",
            role="partner",
            action="release",
            resource="schema:weekly_epi@1",
            outcome="denied",
            reason=f"refused because {MARKUP}",
            partner="XB",
            schema="weekly_epi@1",
            epsilon_micro=0,
            rule="deny by default",
            now=now(),
        )
    page = operator.get("/ui/operator/flows").text
    assert MARKUP not in page
    assert escape(MARKUP) in page


# Budgets


def test_a_budget_line_matches_the_ledger(operator: TestClient, node: Node) -> None:
    release_once(node)
    with reading(node.engine) as conn:
        lines = ledger.report(conn, accounts_in_force(node.policy, now()))
    xb = next(
        line
        for line in lines
        if line.charge.partner_id == "XB" and line.charge.schema_id == "weekly_epi@1"
    )
    assert (xb.spent_micro, xb.charge.cap_micro) == (500_000, 10_000_000)
    page = operator.get("/ui/operator/budgets").text
    partners = re.findall(r'<h3 id="partner-\d+">Partner (\w+)</h3>', page)
    table = f"budget-partner-{partners.index('XB') + 1}"
    row = next(r for r in rows_of(page, table) if "weekly_epi@1" in r[0])
    assert "0.5 of 10 ε spent (5%)" in row[2]
    assert row[3] == "9.5"
    assert 'width="5.0"' in page
    assert "style=" not in page  # the CSP allows no inline style: the bar is an SVG rect


def test_every_account_in_force_has_a_bar(operator: TestClient, node: Node) -> None:
    install_policy(node, LONG_LIVED)
    page = operator.get("/ui/operator/budgets").text
    with reading(node.engine) as conn:
        lines = ledger.report(conn, accounts_in_force(node.policy, now()))
    assert page.count('<svg class="bar"') == len(lines)
    assert len(rows_of(page, "budget-global")) == 3  # one per schema with a global budget


def test_the_bar_fills_from_the_right_in_arabic(operator: TestClient, node: Node) -> None:
    release_once(node)
    operator.cookies.set("exchange_lang", "ar")
    page = operator.get("/ui/operator/budgets").text
    assert 'dir="rtl"' in page
    assert 'x="95.0" y="0" width="5.0"' in page


# Peers


def add_peer(node: Node, *, name: str = "Federation of XB") -> PeerLog:
    log = PeerLog().grow(4)
    peers.add_peer(
        node.engine,
        peer_id="XB",
        name=name,
        url="http://xb.test",
        keys=[peers.NewKey(public_key_text(log.key.public_key()))],
        now=now(),
    )
    return log


def test_peers_show_keys_last_contact_and_a_flag(operator: TestClient, node: Node) -> None:
    log = add_peer(node)
    page = operator.get("/ui/operator/peers").text
    assert key_id(log.key.public_key()) in page
    assert "Usable" in page
    assert "Log consistent" in page
    assert "Never" in page  # no contact yet
    see(node, log, log.checkpoint(0))
    see(node, log.fork(2), log.fork(2).checkpoint(5))  # rolled back
    page = operator.get("/ui/operator/peers").text
    assert "Flagged: inconsistent log" in page
    assert "A peer showed an inconsistent audit log" in page
    contact = activity.last_contacts(node.engine, ["XB"])["XB"]
    assert contact.checkpoint_seen is not None
    assert contact.last == contact.checkpoint_seen
    assert contact.pulled_from_us is None


def test_a_peer_name_is_escaped(operator: TestClient, node: Node) -> None:
    add_peer(node, name=MARKUP)
    page = operator.get("/ui/operator/peers").text
    assert MARKUP not in page
    assert escape(MARKUP) in page


def test_a_release_counts_as_contact(node: Node) -> None:
    add_peer(node)
    release_once(node)
    contact = activity.last_contacts(node.engine, ["XB"])["XB"]
    assert contact.pulled_from_us is not None
    assert contact.last == contact.pulled_from_us


# Who may see them


@pytest.mark.parametrize("role", ["agency", "analyst", "auditor"])
def test_other_roles_are_refused_every_operator_page(
    client: TestClient, node: Node, role: str
) -> None:
    sign_in(ui_client(client), issue(node, role))  # type: ignore[arg-type]
    for page in PAGES:
        answer = client.get(page, follow_redirects=False)
        assert answer.status_code == 403, page
        assert "This page is for the operator role" in answer.text


def test_without_a_session_the_pages_send_to_sign_in(client: TestClient) -> None:
    ui_client(client)
    for page in PAGES:
        answer = client.get(page, follow_redirects=False)
        assert answer.status_code == 303, page
        assert answer.headers["location"].startswith("/ui/sign-in?next=")


@pytest.mark.parametrize("language", ["fr", "es", "ar"])
def test_every_page_answers_in_each_language(
    operator: TestClient, node: Node, language: str
) -> None:
    release_once(node)
    refuse_once(node)
    push_now(node, 3)
    add_peer(node)
    operator.cookies.set("exchange_lang", language)
    for page in PAGES:
        answer = operator.get(page)
        assert answer.status_code == 200, page
        assert answer.headers["content-language"] == language
        assert f'lang="{language}"' in answer.text
