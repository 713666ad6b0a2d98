"""Dashboard sessions: signing in and out, cookies, CSRF, expiry, languages, errors as pages."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from exchange.api.app import create_app
from exchange.ui import navigation
from exchange.ui.views.session import safe_next
from nodes import tokens
from nodes.node import Node
from nodes.settings import NodeSettings
from nodes.tables import dashboard_sessions
from tests.audit_support import stored_entries
from tests.ui_support import csrf_of, issue, sign_in


def audit_actions(node: Node) -> list[tuple[str, str, str]]:
    return [(e["action"], e["outcome"], e["actor"]) for e in stored_entries(node.engine)]


def set_cookie_header(answer: object, name: str) -> str:
    headers = answer.headers.get_list("set-cookie")  # type: ignore[attr-defined]
    (found,) = [h for h in headers if h.startswith(f"{name}=")]
    return str(found)


def test_the_front_door_leads_to_the_sign_in_page(client: TestClient) -> None:
    assert client.get("/", follow_redirects=False).headers["location"] == "/ui/"
    answer = client.get("/ui/", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/sign-in"
    page = client.get("/ui/sign-in")
    assert page.headers["content-type"].startswith("text/html")
    assert 'name="token"' in page.text


def test_a_token_signs_in_to_its_role_start_page_with_a_safe_cookie(
    client: TestClient, node: Node
) -> None:
    secret = issue(node, "auditor", name="national-auditor")
    form = client.get("/ui/sign-in")
    answer = client.post(
        "/ui/sign-in",
        data={"token": secret, "csrf": csrf_of(form.text)},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == navigation.home("auditor")
    cookie = set_cookie_header(answer, "exchange_session").lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert "path=/ui" in cookie
    assert "expires=" in cookie
    assert "secure" not in cookie  # plain http on loopback: a Secure cookie would be dropped
    with node.engine.connect() as conn:
        stored = conn.execute(select(dashboard_sessions)).one()._mapping
    assert secret not in str(dict(stored))  # the node keeps hashes only
    assert stored["secret_sha256"] == tokens.secret_hash(answer.cookies["exchange_session"])
    assert ("session.open", "allowed", "token:national-auditor") in audit_actions(node)


def test_the_session_cookie_is_secure_over_https(settings: NodeSettings, node: Node) -> None:
    secret = issue(node, "operator")
    with TestClient(create_app(settings, node=node), base_url="https://127.0.0.1") as https:
        form = https.get("/ui/sign-in")
        assert "secure" in set_cookie_header(form, "exchange_signin").lower()
        answer = https.post(
            "/ui/sign-in",
            data={"token": secret, "csrf": csrf_of(form.text)},
            follow_redirects=False,
        )
        assert "secure" in set_cookie_header(answer, "exchange_session").lower()


def test_a_wrong_token_is_refused_clearly_and_audited(client: TestClient, node: Node) -> None:
    form = client.get("/ui/sign-in")
    answer = client.post("/ui/sign-in", data={"token": "xt_nonsense", "csrf": csrf_of(form.text)})
    assert answer.status_code == 401
    assert "not known to this node" in answer.text
    assert "exchange_session" not in answer.cookies
    assert ("auth.failed", "denied", "unknown") in audit_actions(node)


def test_a_revoked_token_cannot_sign_in_and_its_refusal_names_it(
    client: TestClient, node: Node
) -> None:
    secret = issue(node, "auditor", name="gone")
    tokens.revoke_token(node.engine, name="gone", now=dt.datetime.now(dt.UTC))
    form = client.get("/ui/sign-in")
    answer = client.post("/ui/sign-in", data={"token": secret, "csrf": csrf_of(form.text)})
    assert answer.status_code == 401
    assert "revoked or has expired" in answer.text
    assert ("auth.failed", "denied", "token:gone") in audit_actions(node)


def test_sign_in_without_its_form_token_is_refused(client: TestClient, node: Node) -> None:
    """Login CSRF: a form posted from elsewhere carries no value matching our cookie."""
    secret = issue(node, "auditor")
    client.get("/ui/sign-in")
    answer = client.post("/ui/sign-in", data={"token": secret, "csrf": "forged"})
    assert answer.status_code == 403
    assert "exchange_session" not in answer.cookies
    fresh = TestClient(client.app)
    answer = fresh.post("/ui/sign-in", data={"token": secret, "csrf": "x"})
    assert answer.status_code == 403
    assert not [a for a in audit_actions(node) if a[0] == "session.open"]


def test_sign_out_ends_the_session_everywhere(client: TestClient, node: Node) -> None:
    secret = issue(node, "auditor", name="auditor-a")
    csrf = sign_in(client, secret)
    cookie = client.cookies["exchange_session"]
    refused = client.post("/ui/sign-out", data={"csrf": "wrong"})
    assert refused.status_code == 403
    answer = client.post("/ui/sign-out", data={"csrf": csrf}, follow_redirects=False)
    assert answer.status_code == 303
    assert "exchange_session=" in answer.headers["set-cookie"]
    other = TestClient(client.app, cookies={"exchange_session": cookie})  # a copied cookie
    again = other.get(navigation.home("auditor"), follow_redirects=False)
    assert again.status_code == 303
    assert again.headers["location"].startswith("/ui/sign-in?next=")
    assert ("session.close", "allowed", "token:auditor-a") in audit_actions(node)


def test_sign_out_needs_a_session(client: TestClient) -> None:
    answer = client.post("/ui/sign-out", data={"csrf": "x"}, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/ui/sign-in")


def test_a_session_ends_at_its_expiry(client: TestClient, node: Node) -> None:
    sign_in(client, issue(node, "auditor"))
    home = navigation.home("auditor")
    assert client.get(home, follow_redirects=False).status_code != 303
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    with node.engine.begin() as conn:
        conn.execute(update(dashboard_sessions).values(expires_at=past))
    answer = client.get(home, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/sign-in?next=%2Fui%2Faudit"


def test_a_sign_in_clears_the_expired_sessions(client: TestClient, node: Node) -> None:
    sign_in(client, issue(node, "auditor", name="first"))
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    with node.engine.begin() as conn:
        conn.execute(update(dashboard_sessions).values(expires_at=past))
    sign_in(TestClient(client.app), issue(node, "operator", name="second"))
    with node.engine.connect() as conn:
        left = conn.execute(select(dashboard_sessions.c.token_id)).all()
    assert len(left) == 1
    assert ("session.open", "allowed", "token:first") in audit_actions(node)  # history stays


def test_a_session_never_outlives_its_token(client: TestClient, node: Node) -> None:
    soon = dt.timedelta(hours=1)
    _record, secret = tokens.issue_token(
        node.engine,
        name="short",
        role="auditor",
        schemas=(),
        now=dt.datetime.now(dt.UTC),
        lifetime=soon,
    )
    sign_in(client, secret)
    with node.engine.connect() as conn:
        (expires_at,) = conn.execute(select(dashboard_sessions.c.expires_at)).one()
    assert expires_at <= dt.datetime.now(dt.UTC) + soon


def test_revoking_the_token_ends_its_sessions_at_once(client: TestClient, node: Node) -> None:
    sign_in(client, issue(node, "auditor", name="revoked-later"))
    tokens.revoke_token(node.engine, name="revoked-later", now=dt.datetime.now(dt.UTC))
    answer = client.get(navigation.home("auditor"), follow_redirects=False)
    assert answer.status_code == 303  # a dead session is no session: sign in again
    assert answer.headers["location"].startswith("/ui/sign-in")


def test_sign_in_returns_to_the_page_asked_for_and_never_elsewhere(
    client: TestClient, node: Node
) -> None:
    secret = issue(node, "auditor")
    form = client.get("/ui/sign-in?next=%2Fui%2Faudit%2Fcheckpoints")
    assert 'name="next" value="/ui/audit/checkpoints"' in form.text
    answer = client.post(
        "/ui/sign-in",
        data={"token": secret, "csrf": csrf_of(form.text), "next": "https://evil.example/"},
        follow_redirects=False,
    )
    assert answer.headers["location"] == navigation.home("auditor")


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/ui/",
        "//evil.example/ui/",
        "/ui/\\evil",
        "/ui//evil.example",
        "/v1/reports",
        "javascript:alert(1)",
        "/ui/\nSet-Cookie:x",
        "",
    ],
)
def test_only_dashboard_pages_are_places_to_return_to(target: str) -> None:
    assert safe_next(target) is None


def test_a_dashboard_page_is_a_safe_place_to_return_to() -> None:
    assert safe_next("/ui/audit?action=release") == "/ui/audit?action=release"


@pytest.mark.parametrize(
    ("header", "lang", "direction"),
    [
        ("fr-CA,fr;q=0.9", "fr", "ltr"),
        ("es", "es", "ltr"),
        ("ar-EG", "ar", "rtl"),
        ("de", "en", "ltr"),
        (None, "en", "ltr"),
    ],
)
def test_the_page_language_follows_the_browser(
    client: TestClient, header: str | None, lang: str, direction: str
) -> None:
    page = client.get("/ui/sign-in", headers={"Accept-Language": header} if header else {})
    assert f'<html lang="{lang}" dir="{direction}">' in page.text
    assert page.headers["content-language"] == lang


def test_the_language_switch_is_remembered_over_the_browser_language(client: TestClient) -> None:
    answer = client.get("/ui/language/ar?next=/ui/sign-in", follow_redirects=False)
    assert answer.headers["location"] == "/ui/sign-in"
    assert "max-age=" in answer.headers["set-cookie"].lower()
    page = client.get("/ui/sign-in", headers={"Accept-Language": "fr"})
    assert '<html lang="ar" dir="rtl">' in page.text
    assert "تسجيل الدخول" in page.text
    assert client.get("/ui/language/de", follow_redirects=False).status_code == 400


def test_the_switch_links_back_to_the_page_it_is_on(client: TestClient) -> None:
    page = client.get("/ui/sign-in")
    for code in ("en", "fr", "es", "ar"):
        assert f'href="/ui/language/{code}?next=/ui/sign-in"' in page.text


def test_an_unknown_page_is_a_page_in_the_readers_language(client: TestClient) -> None:
    answer = client.get("/ui/no/such/page", headers={"Accept-Language": "es"})
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("text/html")
    assert "No hay ninguna página en esta dirección." in answer.text


def test_an_unknown_parameter_is_a_clear_page_not_json(client: TestClient) -> None:
    answer = client.get("/ui/sign-in?nxt=/ui/audit")
    assert answer.status_code == 422  # as the API answers a misspelt parameter
    assert answer.headers["content-type"].startswith("text/html")
    assert "nxt" in answer.text


def test_pages_forbid_inline_script_framing_and_caching(client: TestClient) -> None:
    answer = client.get("/ui/sign-in")
    policy = answer.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert "<script>" not in answer.text
    assert " style=" not in answer.text


def test_every_asset_comes_from_the_node(client: TestClient) -> None:
    page = client.get("/ui/sign-in").text
    urls = re.findall(r'(?:href|src)="([^"]+)"', page)
    assert urls
    assert all(u.startswith(("/", "#")) for u in urls), urls
    css = client.get("/ui/static/style.css")
    assert css.status_code == 200
    assert "http" not in css.text.replace("https://", "").lower() or "url(" not in css.text


def test_a_token_name_with_markup_is_shown_as_text(client: TestClient, node: Node) -> None:
    sign_in(client, issue(node, "auditor", name='<script>alert("x")</script>'))
    page = client.get("/ui/sign-in")
    assert "<script>alert" not in page.text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page.text


@pytest.fixture
def signed_in_clients(settings: NodeSettings, node: Node) -> Iterator[dict[str, TestClient]]:
    app = create_app(settings, node=node)
    clients: dict[str, TestClient] = {}
    with TestClient(app) as first:
        for role in navigation.MENU:
            browser = first if not clients else TestClient(app)
            sign_in(browser, issue(node, role, name=f"{role}-1"))  # type: ignore[arg-type]
            clients[role] = browser
        yield clients


def test_each_role_sees_its_own_pages_and_is_refused_the_others(
    signed_in_clients: dict[str, TestClient], node: Node
) -> None:
    open_to_all = {"/ui/schemas"}  # public metadata (GET /v1/schemas needs no token either)
    for role, browser in signed_in_clients.items():
        own = {href for href, _ in navigation.MENU[role]} | open_to_all  # type: ignore[index]
        for other, pages in navigation.MENU.items():
            for href, _label in pages:
                answer = browser.get(href, follow_redirects=False)
                if href in own:
                    assert answer.status_code == 200, (role, href)
                else:
                    assert answer.status_code == 403, (role, other, href)
                    assert "This page is for the" in answer.text
    refusals = [a for a in audit_actions(node) if a[0] == "auth.forbidden"]
    assert ("auth.forbidden", "denied", "token:agency-1") in refusals


class _Controls(HTMLParser):
    """Form controls a person fills in, and the ids that a ``<label for>`` names."""

    def __init__(self) -> None:
        super().__init__()
        self.controls: list[dict[str, str | None]] = []
        self.labelled: set[str] = set()
        self.in_label = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "label":
            self.in_label += 1
            if found.get("for"):
                self.labelled.add(str(found["for"]))
        if tag in ("input", "select", "textarea") and found.get("type") not in (
            "hidden",
            "submit",
            "button",
        ):
            self.controls.append({**found, "_wrapped": "yes" if self.in_label else None})

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self.in_label -= 1


def test_every_form_control_on_every_page_has_a_label(
    signed_in_clients: dict[str, TestClient],
) -> None:
    """WCAG 2.1 (1.3.1, 3.3.2, 4.1.2): each input says what it is for, to every reader."""
    seen = 0
    for role, browser in signed_in_clients.items():
        for href, _label in navigation.MENU[role]:  # type: ignore[index]
            page = _Controls()
            page.feed(browser.get(href).text)
            for control in page.controls:
                seen += 1
                named = (
                    control.get("id") in page.labelled
                    or control.get("_wrapped")
                    or control.get("aria-label")
                    or control.get("aria-labelledby")
                )
                assert named, (href, control)
    assert seen >= 5  # the upload form, the policy check, the log's filters


def test_an_unexpected_failure_is_a_page_that_reveals_nothing(
    client: TestClient,
    node: Node,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from exchange.ui.views import session as session_views

    def broken(*_args: object, **_kwargs: object) -> object:
        raise RuntimeError("secret internals: /etc/node/keys")

    monkeypatch.setattr(session_views, "_sign_in_page", broken)
    answer = client.get("/ui/sign-in", headers={"Accept-Language": "fr"})
    assert answer.status_code == 500
    assert answer.headers["content-type"].startswith("text/html")
    assert "secret internals" not in answer.text
    assert '<html lang="fr"' in answer.text
    assert "RuntimeError" in caplog.text  # the operator's log has it
