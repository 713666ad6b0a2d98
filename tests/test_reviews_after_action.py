"""The after-action review: exact figures from a small history, one node and a federation;
a tampered log refuses; no output ever holds a released value."""

from __future__ import annotations

import datetime as dt
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import suppress
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from exchange.cli import app as cli
from exchange.ui import charts
from exchange.ui.after_action import Format, render
from nodes import ledger, reports, tokens
from nodes.audit.events import record_refusal
from nodes.audit.tables import audit_entries
from nodes.database import reading
from nodes.directory import init_node
from nodes.node import Node
from nodes.releases import pipeline, store
from nodes.reviews import after_action
from policies.accounts import BudgetLine, accounts_in_force
from policies.query import ReleaseQuery
from schemas.labels import Language
from schemas.validation import from_json_rows
from tests.conftest import postgres_schema_url
from tests.release_support import NOW, edited_policy, install_policy, weekly

SCHEMA = "weekly_epi@1"
CASES = 731_457  # distinctive: a released cell near a multiple of it shows in a text scan
XB_QUERY = ReleaseQuery(
    schema_id=SCHEMA,
    measures=("cases",),
    group_by=("area:adm1", "week"),
    since="2026-W01",
    until="2026-W09",
    purpose="outbreak_response",
)
DISTRICTS = XB_QUERY.model_copy(update={"group_by": ("area:adm2", "week")})
XC_QUERY = ReleaseQuery(schema_id=SCHEMA, purpose="situational_awareness")
XC_CAP = "budget: {epsilon: 0.5, period: total}"
START, END = NOW - dt.timedelta(hours=1), NOW + dt.timedelta(days=1)
runner = CliRunner()


def at(hours: float) -> dt.datetime:
    return NOW + dt.timedelta(hours=hours)


def push(node: Node, token: tokens.TokenRecord, areas: tuple[str, ...], when: dt.datetime) -> None:
    batch = from_json_rows(
        node.registry.get(SCHEMA), weekly(areas, range(1, 9), cases=CASES), node.validation
    )
    reports.store(node.engine, batch=batch, token=token, idempotency_key=None, now=when)


def release(node: Node, partner: str, query: ReleaseQuery, when: dt.datetime) -> None:
    with suppress(pipeline.PolicyDeniedError, pipeline.InsufficientBudgetError):
        pipeline.release(node, partner_id=partner, query=query, now=when)  # refusals audited


def history(node: Node) -> None:
    """Three pushes; XB gets two releases (and one served again), XC two, then its budget
    is spent; a district query refused by the agreement; a refused credential."""
    install_policy(node, edited_policy(("budget: {epsilon: 3, period: total}", XC_CAP)))
    moh, _ = tokens.issue_token(
        node.engine, name="moh", role="agency", schemas=(SCHEMA,), now=at(-0.5)
    )
    push(node, moh, ("XA-P1-D1", "XA-P2-D1", "XA-P2-D2"), at(0))
    release(node, "XB", XB_QUERY, at(1))
    record_refusal(
        node.engine,
        actor="unknown",
        role="unknown",
        action="auth.failed",
        resource="route:GET /v1/audit/entries",
        reason="the bearer token is not valid",
        now=at(2),
    )
    release(node, "XC", XC_QUERY, at(3))
    push(node, moh, ("XA-P3-D1",), at(5))
    release(node, "XB", XB_QUERY, at(5.5))  # new data: a new release
    release(node, "XB", XB_QUERY, at(6))  # the same again: served from the store
    release(node, "XB", DISTRICTS, at(6.1))  # finer than the agreement allows
    release(node, "XC", XC_QUERY, at(7))  # spends what is left of XC's cap
    push(node, moh, ("XA-P3-D2",), at(7.5))
    release(node, "XC", XC_QUERY, at(8))  # refused by the budget; push 3 never released


@pytest.fixture
def done(node: Node) -> Node:
    history(node)
    return node


def review(node: Node, **window: dt.datetime | None) -> after_action.AfterAction:
    start = window.get("start", START)
    end = window.get("end", END) or END
    return after_action.for_node(node, start=start, end=end, now=at(30))


def released_values(node: Node) -> set[str]:
    """Every released cell value with enough digits to be told from a count or a date."""
    with reading(node.engine) as conn:
        made = [store.get(conn, m.id) for m in store.listing(conn, limit=1000)]
    values = {
        str(value)
        for stored in made
        if stored is not None
        for column in stored.values.values()
        for value in column
        if value is not None and value >= 1000
    }
    assert len(values) >= 5, "the scan must check some released values"
    return values


def assert_no_released_value(text: str, node: Node) -> None:
    tokens_in = set(text.replace(",", " ").replace('"', " ").split())
    for value in released_values(node):
        assert value not in text, value
        assert f"{int(value):,}" not in text, value
        assert value not in tokens_in


# --- the figures ----------------------------------------------------------------------------


def test_exact_figures_for_a_small_history(done: Node) -> None:
    found = review(done)
    shared = {(s.partner, s.schema): s for s in found.shared}
    xb, xc = shared[("XB", SCHEMA)], shared[("XC", SCHEMA)]
    assert (xb.releases, xb.replayed, xc.releases, xc.replayed) == (2, 1, 2, 0)
    assert (xb.first, xb.last) == ("2026-03-16T13:00:00.000000Z", "2026-03-16T18:00:00.000000Z")
    assert (xc.first, xc.last) == ("2026-03-16T15:00:00.000000Z", "2026-03-16T19:00:00.000000Z")
    assert xb.epsilon_micro == 1_000_000 and xc.epsilon_micro == 500_000
    assert {(r.partner, r.rule): r.count for r in found.refusals} == {
        ("XB", "agreement XB-epi-2026"): 1,
        ("XC", "budget"): 1,
    }
    latency = found.latency
    assert (latency.pushes, latency.unreleased_pushes) == (3, 1)
    # push 1 -> XB 1 h, -> XC 3 h; push 2 -> XB 30 min, -> XC 2 h
    assert latency.overall == after_action.Delays(4, 3600.0, 10800.0)
    rows = {r.partner: r.delays for r in latency.rows}
    assert rows == {
        "XB": after_action.Delays(2, 1800.0, 3600.0),
        "XC": after_action.Delays(2, 7200.0, 10800.0),
    }
    (incident,) = found.incidents
    assert (incident.action, incident.outcome, incident.actor) == (
        "auth.failed",
        "denied",
        "unknown",
    )
    assert incident.time == "2026-03-16T14:00:00.000000Z"
    assert found.bucket == "hour"
    active = [c for c in found.timeline if c.pushes or c.releases or c.refusals or c.incidents]
    assert sum(c.pushes for c in found.timeline) == 3
    assert sum(c.releases for c in found.timeline) == 4
    assert sum(c.refusals for c in found.timeline) == 2
    assert active[0].start == "2026-03-16T12:00:00.000000Z" and active[0].pushes == 1
    kinds = [(e.kind, e.partner or e.schema) for e in found.events if e.kind != "policy"]
    assert kinds == [
        ("first-push", SCHEMA),
        ("first-release", "XB"),
        ("incident", None),
        ("first-release", "XC"),
    ]


def test_budgets_equal_the_ledger(done: Node) -> None:
    found = review(done)
    charges = accounts_in_force(done.policy, at(23))
    with reading(done.engine) as conn:
        stored: dict[tuple[str, str, str], BudgetLine] = {
            (line.charge.scope, line.charge.partner_id, line.charge.schema_id): line
            for line in ledger.report(conn, charges)
        }
    assert found.budgets, "the policy has accounts in force"
    for row in found.budgets:
        a = row.account
        line = stored[(a.scope, a.partner_id, a.schema_id)]
        assert (a.spent_micro, a.cap_micro) == (line.spent_micro, line.charge.cap_micro)
    spent = {(b.account.partner_id, b.account.schema_id): b.account for b in found.budgets}
    assert spent[("XC", SCHEMA)].spent_micro == spent[("XC", SCHEMA)].cap_micro == 500_000
    assert spent[("*", SCHEMA)].spent_micro == 1_500_000


def test_the_window_cuts_activity_but_not_the_budget_spent_before_it(done: Node) -> None:
    later = review(done, start=at(5))
    assert later.latency.pushes == 2
    assert {(s.partner, s.releases) for s in later.shared} == {("XB", 1), ("XC", 1)}
    assert later.incidents == ()
    spent = {(b.account.partner_id, b.account.schema_id): b.account for b in later.budgets}
    assert spent[("XC", SCHEMA)].spent_micro == 500_000  # charged at 3 h and 7 h
    earlier = review(done, end=at(4))
    assert earlier.latency.unreleased_pushes == 0 and earlier.latency.pushes == 1
    spent = {(b.account.partner_id, b.account.schema_id): b.account for b in earlier.budgets}
    assert spent[("XC", SCHEMA)].spent_micro == 250_000


def test_nearest_rank_picks_an_observed_value() -> None:
    values = [float(v) for v in range(1, 21)]
    assert after_action.nearest_rank(values, 50) == 10.0
    assert after_action.nearest_rank(values, 95) == 19.0
    assert after_action.nearest_rank([7.0], 95) == 7.0
    assert after_action.nearest_rank([], 50) is None


def test_long_windows_count_per_day_then_per_week() -> None:
    assert after_action.bucket_of(NOW, NOW + dt.timedelta(days=2)) == "hour"
    assert after_action.bucket_of(NOW, NOW + dt.timedelta(days=10)) == "day"
    assert after_action.bucket_of(NOW, NOW + dt.timedelta(days=200)) == "week"
    assert after_action.floor(at(7.5), "week") == dt.datetime(2026, 3, 16, tzinfo=dt.UTC)


# --- a federation ---------------------------------------------------------------------------


def _opened(tmp_path: Path, url: str) -> Iterator[Node]:
    settings, _ = init_node(tmp_path / "xd", node_id="XD", name="Republic of XD", database_url=url)
    other = Node.open(settings)
    try:
        yield other
    finally:
        other.close()


@pytest.fixture
def xd(tmp_path: Path, database_url: str) -> Iterator[Node]:
    """A second node, on the same backend as ``node``."""
    if database_url.startswith("sqlite"):
        yield from _opened(tmp_path, "")
        return
    for url in postgres_schema_url():
        yield from _opened(tmp_path, url)


def test_one_review_over_a_federation(done: Node, xd: Node) -> None:
    agency, _ = tokens.issue_token(
        xd.engine, name="moh-xd", role="agency", schemas=(SCHEMA,), now=at(0)
    )
    batch = from_json_rows(
        xd.registry.get(SCHEMA), weekly(("XD-P1-D1",), range(1, 3)), xd.validation
    )
    reports.store(xd.engine, batch=batch, token=agency, idempotency_key=None, now=at(1))
    record_refusal(
        xd.engine, actor="unknown", role="unknown", action="auth.failed",
        resource="route:POST /v1/reports", reason="no bearer token", now=at(1.5),
    )  # fmt: skip
    both = after_action.for_nodes([done, xd], start=START, end=END, now=at(30))
    alone = review(done)
    assert [node for node, _head in both.checkpoints] == ["XA", "XD"]
    assert both.latency.pushes == alone.latency.pushes + 1
    assert both.latency.unreleased_pushes == alone.latency.unreleased_pushes + 1
    assert both.latency.overall == alone.latency.overall  # XD released nothing
    assert [i.node for i in both.incidents] == ["XD", "XA"]  # in time order
    assert {b.node for b in both.budgets} == {"XA"}  # XD has no policy: no account
    assert both.shared == alone.shared
    html = render(both, fmt="html", language="en")
    assert "XD" in html and '<th scope="col">Node</th>' in html


# --- the files ------------------------------------------------------------------------------


class Balanced(HTMLParser):
    """Fails on a closing tag that does not close the open one (void elements aside)."""

    VOID = frozenset({"meta", "br", "link", "img", "input", "hr", "rect", "line", "circle", "path"})

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: Any) -> None:
        pass

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        assert self.open and self.open[-1] == tag, (tag, self.open[-5:])
        self.open.pop()


def test_every_format_holds_the_figures_and_no_released_value(done: Node) -> None:
    found = review(done)
    document = json.loads(render(found, fmt="json"))
    assert document["type"] == "crisis-exchange/after-action/v1"
    assert document["latency"]["median_seconds"] == 3600.0
    assert document["latency"]["p95_seconds"] == 10800.0
    assert {(r["partner"], r["rule"]) for r in document["refusals"]} == {
        ("XB", "agreement XB-epi-2026"),
        ("XC", "budget"),
    }
    languages: tuple[Language, ...] = ("en", "fr", "es", "ar")
    formats: tuple[Format, ...] = ("json", "md", "html")
    for language in languages:
        for fmt in formats:
            text = render(found, fmt=fmt, language=language)
            assert_no_released_value(text, done)
    markdown = render(found, fmt="md")
    assert "| XB | agreement XB-epi-2026 | 1 |" in markdown.replace("| XA | ", "| ")
    html = render(found, fmt="html", language="ar")
    assert '<html lang="ar" dir="rtl">' in html
    checker = Balanced()
    checker.feed(html)
    checker.close()
    assert checker.open == []
    assert (
        html.count("<svg") == 3
        and "<script" not in html
        and "http" not in html.split("</style>")[1].replace("http://www.w3.org/2000/svg", "")
    )


def test_text_from_the_log_is_escaped(done: Node) -> None:
    record_refusal(
        done.engine, actor="unknown", role="unknown", action="auth.failed",
        resource="route:GET /v1/x", reason="<script>alert(1)</script> | pipe", now=at(9),
    )  # fmt: skip
    found = review(done)
    html = render(found, fmt="html")
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)" in html
    markdown = render(found, fmt="md")
    assert "<script>" not in markdown and "\\| pipe" in markdown


def test_charts_draw_bars_against_caps_and_lanes() -> None:
    svg = charts.bars(
        [
            charts.Bar("XB <b>", 50, "0.5 of 1", cap=100),
            charts.Bar("XC", 150, "1.5 of 1", cap=100),
        ],
        title="Budget",
        empty="none",
    )
    root = ET.fromstring(svg)
    fills = [
        r for r in root.iter(f"{{{charts.SVG_NAMESPACE}}}rect") if "hbar-fill" in r.get("class", "")
    ]
    track = charts.WIDTH - charts.BAR_LABEL - charts.BAR_TEXT
    assert [float(r.get("width", 0)) for r in fills] == [track / 2, float(track)]
    assert [r.get("class") for r in fills] == ["hbar-fill", "hbar-fill over"]
    assert "XB &lt;b&gt;" in svg
    lanes = charts.timeline(
        [charts.Lane("Pushes", [0, 2, 4]), charts.Lane("Releases", [1, 0, 0])],
        ["a", "b", "c"],
        title="Activity",
        empty="nothing",
        number=str,
    )
    bars = [r for r in ET.fromstring(lanes).iter(f"{{{charts.SVG_NAMESPACE}}}rect")]
    assert len(bars) == 3
    assert max(float(r.get("height", 0)) for r in bars) == charts.LANE_HEIGHT
    assert "nothing" in charts.timeline(
        [charts.Lane("P", [0])], ["a"], title="t", empty="nothing", number=str
    )


# --- the command ----------------------------------------------------------------------------


def run(*args: str | Path) -> Any:
    return runner.invoke(cli, [str(a) for a in args])


def test_the_cli_writes_each_format(done: Node, tmp_path: Path) -> None:
    directory = done.settings.directory
    window = ("--from", "2026-03-16", "--to", "2026-03-16")
    written = run("report", "after-action", directory, *window)
    assert written.exit_code == 0, written.output
    document = json.loads(written.stdout)
    assert document["window"] == {
        "start": "2026-03-16T00:00:00.000000Z",
        "end": "2026-03-17T00:00:00.000000Z",
        "bucket": "hour",
    }
    assert document["latency"]["pushes"] == 3
    page = tmp_path / "review.html"
    html = run("report", "after-action", directory, *window, "--format", "html", "--language",
               "fr", "--out", page)  # fmt: skip
    assert html.exit_code == 0, html.output
    assert '<html lang="fr" dir="ltr">' in page.read_text(encoding="utf-8")
    assert_no_released_value(page.read_text(encoding="utf-8"), done)
    markdown = run("report", "after-action", directory, "--format", "md")
    assert markdown.exit_code == 0 and markdown.stdout.startswith("# After-action review")
    no_out = run("report", "after-action", directory, "--format", "html")
    assert no_out.exit_code == 2 and "--out" in no_out.output
    bad = run("report", "after-action", directory, "--from", "yesterday")
    assert bad.exit_code == 2 and "is not a date" in bad.output
    empty = run("report", "after-action", directory, "--from", "2026-03-17", "--to", "2026-03-16")
    assert empty.exit_code == 2 and "the window is empty" in empty.output


def test_a_tampered_log_makes_the_cli_refuse(done: Node, tmp_path: Path) -> None:
    with done.engine.begin() as conn:
        rows = conn.execute(select(audit_entries.c.seq, audit_entries.c.entry)).all()
        seq, entry = next((q, bytes(e)) for q, e in rows if b'"epsilon_micro":500000' in e)
        changed = entry.replace(b'"epsilon_micro":500000', b'"epsilon_micro":100000')
        conn.execute(update(audit_entries).where(audit_entries.c.seq == seq).values(entry=changed))
    out = tmp_path / "review.html"
    refused = run(
        "report", "after-action", done.settings.directory, "--format", "html", "--out", out
    )
    assert refused.exit_code == 1
    assert refused.output.startswith("The audit log does not verify: [")
    assert refused.output.rstrip().endswith("; no report was written.")
    assert not out.exists() and not list(tmp_path.glob("review.html*"))


def test_the_log_is_verified_before_any_figure(done: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the node's start-up check (a row changed while it runs), the verifier refuses."""
    from nodes.audit.errors import LogIntegrityError
    from nodes.audit.verifier import VerificationError

    with done.engine.begin() as conn:
        seq, entry = conn.execute(
            select(audit_entries.c.seq, audit_entries.c.entry).order_by(audit_entries.c.seq.desc())
        ).first()  # type: ignore[misc]
        changed = bytes(entry).replace(b'"outcome":"', b'"outcome":"x', 1)
        conn.execute(update(audit_entries).where(audit_entries.c.seq == seq).values(entry=changed))
    with pytest.raises((VerificationError, LogIntegrityError)):
        review(done)
