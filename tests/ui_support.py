"""Signing in to the dashboard from tests that use a ``TestClient`` (no browser)."""

from __future__ import annotations

import datetime as dt
import re

from starlette.testclient import TestClient

from nodes import tokens
from nodes.access import Role
from nodes.node import Node

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    """The CSRF value of the first form on a page."""
    found = _CSRF.search(html)
    assert found is not None, "the page has no form with a CSRF field"
    return found.group(1)


def issue(node: Node, role: Role, *, name: str | None = None, schemas: tuple[str, ...] = ()) -> str:
    """A new token's secret; agency tokens may push ``schemas`` (weekly_epi@1 by default)."""
    if role == "agency" and not schemas:
        schemas = ("weekly_epi@1",)
    _record, secret = tokens.issue_token(
        node.engine,
        name=name or f"{role}-person",
        role=role,
        schemas=schemas,
        now=dt.datetime.now(dt.UTC),
    )
    return secret


def sign_in(client: TestClient, secret: str) -> str:
    """Sign ``client`` in with ``secret``; the session's CSRF value, for posting forms."""
    form = client.get("/ui/sign-in")
    answer = client.post(
        "/ui/sign-in",
        data={"token": secret, "csrf": csrf_of(form.text)},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    landing = client.get(answer.headers["location"])
    return csrf_of(landing.text)


def ui_client(client: TestClient) -> TestClient:
    """``client`` as a browser on this node: cookies need the node's own host name."""
    client.base_url = client.base_url.copy_with(host="127.0.0.1")  # type: ignore[assignment]
    return client
