"""The public transparency page: off by default, counts only, never the data."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser

import pytest
from babel.numbers import format_decimal
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.testclient import TestClient

from exchange.api.app import create_app
from exchange.demo.data import as_csv, outbreak_rows, policy_yaml
from nodes import ledger, peers
from nodes.access import ForbiddenError
from nodes.audit import checkpoint_store
from nodes.database import reading
from nodes.identity import public_key_text
from nodes.node import Node
from nodes.releases import pipeline, store
from nodes.settings import NodeSettings
from policies.query import ReleaseQuery
from schemas.errors import BudgetExhaustedError
from tests.federation import BY_NATION, SCHEMA, query
from tests.ui_support import issue, sign_in, ui_client

HOSTILE_NAME = '<script>alert("xb")</script> Federation of XB'


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Cells(HTMLParser):
    """The text of each body row of the page's first table, cell by cell."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.tables = 0
        self._in_body = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables += 1
        elif tag == "tbody" and self.tables == 1:
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.rows.append([])
        elif tag in ("td", "th") and self._in_body:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._in_body = False
        elif tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append(" ".join(" ".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def table_rows(html: str) -> dict[str, list[str]]:
    """First-table rows keyed by the partner id (the row header's last word)."""
    parser = Cells()
    parser.feed(html)
    return {row[0].split()[-1]: row for row in parser.rows if row}


@dataclass
class Public:
    node: Node
    client: TestClient
    released: list[pipeline.Release]


def _release_or_refusal(node: Node, partner: str, found: ReleaseQuery) -> pipeline.Release | None:
    try:
        return pipeline.release(node, partner_id=partner, query=found, now=now())
    except (ForbiddenError, BudgetExhaustedError):
        return None


def _open(settings: NodeSettings, *, public: bool) -> Iterator[Public]:
    chosen = settings.model_copy(update={"public_transparency": public})
    node = Node.open(chosen)
    try:
        node.apply_policy(
            policy_yaml(BY_NATION["XA"]), source="test", actor="operator:test", now=now()
        )
        for peer_id, name in (("XB", HOSTILE_NAME), ("XC", "Kingdom of XC")):
            key = public_key_text(Ed25519PrivateKey.generate().public_key())
            peers.add_peer(
                node.engine,
                peer_id=peer_id,
                name=name,
                url=f"http://{peer_id.lower()}.test",
                keys=[peers.NewKey(key)],
                now=now(),
            )
        with TestClient(create_app(chosen, node=node)) as client:
            ui_client(client)
            agency = issue(node, "agency")
            pushed = client.post(
                f"/v1/reports/{SCHEMA}",
                content=as_csv(outbreak_rows(BY_NATION["XA"], node.gazetteer, now().date())),
                headers={"Authorization": f"Bearer {agency}", "Content-Type": "text/csv"},
            )
            assert pushed.status_code == 201, pushed.text
            made = [
                _release_or_refusal(node, "XB", query("area:adm1", "week")),  # released
                _release_or_refusal(node, "XB", query("area:adm1", "week")),  # cached: no count
                _release_or_refusal(node, "XB", query("area:adm2", "week")),  # too fine
                _release_or_refusal(node, "XB", query("area:adm1", measures=("deaths",))),
                _release_or_refusal(node, "XC", query("area:adm0", "week")),  # released
            ]
            checkpoint_store.sign(node.engine, node.key.private_key, now=now())  # figures as of it
            yield Public(node, client, [r for r in made if r is not None])
    finally:
        node.close()


@pytest.fixture
def public(settings: NodeSettings) -> Iterator[Public]:
    yield from _open(settings, public=True)


@pytest.fixture
def private(settings: NodeSettings) -> Iterator[Public]:
    yield from _open(settings, public=False)


def test_off_by_default_the_page_is_an_unknown_address(private: Public) -> None:
    assert private.released, "the node released something that the page could count"
    page = private.client.get("/ui/transparency")
    unknown = private.client.get("/ui/no-such-page")
    assert page.status_code == 404
    assert unknown.status_code == 404
    assert page.text.replace("/ui/transparency", "/ui/X") == unknown.text.replace(
        "/ui/no-such-page", "/ui/X"
    )
    for revealing in ("Releases", "Refusals", "XB", "Kingdom of XC", "ε"):
        assert revealing not in page.text


def test_off_the_sign_in_page_does_not_link_to_it(private: Public) -> None:
    assert "/ui/transparency" not in private.client.get("/ui/sign-in").text


def test_on_anyone_reads_it_without_signing_in(public: Public) -> None:
    page = public.client.get("/ui/transparency", follow_redirects=False)
    assert page.status_code == 200
    assert "Content-Security-Policy" in page.headers
    assert "Sign out" not in page.text
    assert "/ui/transparency" in public.client.get("/ui/sign-in").text


def test_a_signed_in_person_reads_it_too(public: Public) -> None:
    sign_in(public.client, issue(public.node, "analyst", name="reader"))
    page = public.client.get("/ui/transparency")
    assert page.status_code == 200
    assert "Signed in as reader" in page.text
    assert "XB" in table_rows(page.text)


def test_counts_match_the_stored_releases_and_refusals(public: Public) -> None:
    rows = table_rows(public.client.get("/ui/transparency").text)
    with reading(public.node.engine) as conn:
        released = {(p, s): n for p, s, _a, n in store.counts(conn)}
    assert released == {("XB", SCHEMA): 1, ("XC", SCHEMA): 1}
    assert set(rows) == {"XB", "XC"}
    # partner, schema, releases, refusals, ε in the period, budget period, spent, cap, used
    assert rows["XB"][2:5] == ["1", "2", "1"]
    assert rows["XC"][2:5] == ["1", "0", "0.5"]


def test_epsilon_spent_and_budgets_match_the_ledger(public: Public) -> None:
    html = public.client.get("/ui/transparency").text
    rows = table_rows(html)
    with reading(public.node.engine) as conn:
        lines = {
            (line.charge.scope, line.charge.partner_id): line for line in ledger.all_lines(conn)
        }
    for partner in ("XB", "XC"):
        line = lines[("partner", partner)]
        spent = format_decimal(line.spent_micro / 1e6, locale="en")
        cap = format_decimal(line.charge.cap_micro / 1e6, locale="en")
        assert rows[partner][5:8] == ["all time", spent, cap]
    assert lines[("partner", "XB")].spent_micro == 1_000_000
    assert lines[("partner", "XC")].spent_micro == 500_000
    shared = lines[("global", "*")]
    assert shared.spent_micro == 1_500_000
    assert re.search(r"<bdi>1\.5</bdi></td>\s*<td class=\"num\"><bdi>20</bdi>", html)


def test_nothing_about_the_data_reaches_the_page(public: Public) -> None:
    html = public.client.get("/ui/transparency").text
    cells = [cell for r in public.released for cell in r.as_document()["cells"]]
    areas = {cell["area"] for cell in cells}
    assert "XA-P1" in areas
    for area in areas - {"XA"}:
        assert area not in html
    values = sorted(
        cell["cases"]["value"] for cell in cells if isinstance(cell["cases"].get("value"), int)
    )
    largest = values[-1]
    assert largest >= 100
    assert str(largest) not in html
    assert format_decimal(largest, locale="en") not in html
    # reason texts and query words never show; the refusing rule's id does, on purpose
    for secret in ("Deaths are published", "outbreak_response", "admin level"):
        assert secret not in html


def test_a_peer_name_with_markup_is_escaped(public: Public) -> None:
    html = public.client.get("/ui/transparency").text
    assert "&lt;script&gt;alert(&#34;xb&#34;)&lt;/script&gt; Federation of XB" in html
    assert "<script>alert" not in html


def test_in_arabic_the_page_is_right_to_left(public: Public) -> None:
    page = public.client.get("/ui/transparency", headers={"Accept-Language": "ar"})
    assert page.status_code == 200
    assert '<html lang="ar" dir="rtl">' in page.text
    assert page.headers["Content-Language"] == "ar"


def test_an_undeclared_parameter_is_refused(public: Public) -> None:
    page = public.client.get("/ui/transparency?partner=XB")
    assert page.status_code == 422
    assert page.headers["content-type"].startswith("text/html")
    assert "Releases" not in page.text


def test_a_node_that_shared_nothing_says_so(settings: NodeSettings) -> None:
    chosen = settings.model_copy(update={"public_transparency": True})
    node = Node.open(chosen)
    try:
        with TestClient(create_app(chosen, node=node)) as client:
            page = ui_client(client).get("/ui/transparency")
    finally:
        node.close()
    assert page.status_code == 200
    assert "has not released anything" in page.text
    assert table_rows(page.text) == {}


def test_refusals_are_counted_by_the_rule_that_refused_them(public: Public) -> None:
    html = public.client.get("/ui/transparency").text
    refusals = html.split('id="refusals"')[1].split("</table>")[0]
    rows = re.findall(
        r'<bdi class="code">([^<]+)</bdi></td>\s*<td class="num"><bdi>(\d+)', refusals
    )
    assert sorted(rows) == [("agreement xa-xb-regional", "1"), ("red line no-deaths", "1")], rows


def test_it_names_the_checkpoint_its_figures_come_from(public: Public) -> None:
    signed = checkpoint_store.latest_checkpoint(public.node.engine)
    assert signed is not None
    html = public.client.get("/ui/transparency").text
    size = format_decimal(signed.checkpoint.tree_size, locale="en")
    assert f"Figures as of the audit log checkpoint covering {size} entries" in html


def test_a_later_entry_shows_only_once_a_checkpoint_covers_it(public: Public) -> None:
    before = table_rows(public.client.get("/ui/transparency").text)["XC"][2]
    pipeline.release(public.node, partner_id="XC", query=query("area:adm0"), now=now())
    assert table_rows(public.client.get("/ui/transparency").text)["XC"][2] == before
    checkpoint_store.sign(public.node.engine, public.node.key.private_key, now=now())
    after = table_rows(public.client.get("/ui/transparency").text)["XC"][2]
    assert int(after) == int(before) + 1


def test_the_period_menu_offers_this_quarter_first_and_earlier_ones(public: Public) -> None:
    moment = now()
    quarter = f"{moment.year}-Q{(moment.month - 1) // 3 + 1}"
    html = public.client.get("/ui/transparency").text
    offered = re.findall(r'<option value="([^"]+)"', html)
    assert offered[0] == quarter and len(offered) == 8
    assert f'<option value="{quarter}" dir="ltr" selected>' in html
    earlier = public.client.get(f"/ui/transparency?period={offered[1]}")
    assert earlier.status_code == 200
    assert table_rows(earlier.text).get("XB", ["", "", "0"])[2] == "0"  # nothing then
    year = public.client.get(f"/ui/transparency?period={moment.year}")
    assert table_rows(year.text)["XB"][2:4] == ["1", "2"]


@pytest.mark.parametrize("period", ["2026-Q5", "last", "2026-13", "9999-Q1", "%3Cscript%3E"])
def test_a_period_that_is_not_one_is_an_unknown_address(public: Public, period: str) -> None:
    page = public.client.get(f"/ui/transparency?period={period}")
    unknown = public.client.get("/ui/no-such-page")
    assert page.status_code == 404
    assert "Releases" not in page.text and "<script>" not in page.text
    assert (
        page.text.split("<main")[1].split("</main>")[0]
        == unknown.text.split("<main")[1].split("</main>")[0]
    )
