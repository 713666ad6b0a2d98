"""Correction notices between nodes: a partner fetches only its own, signed; unsigned or
wrongly signed fetches are 401 and audited as nothing fetched; the partner keeps each
notice with its signature and marks the releases it names as superseded."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx2
import pytest
import stamina
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from typer.testing import CliRunner

from exchange.cli import app, common
from exchange.clients import notices as notice_client
from exchange.clients.pulling import pull, reverify
from exchange.demo.data import as_csv, outbreak_rows
from exchange.signing.signatures import (
    RequestMessage,
    SignatureError,
    sign_request,
    to_httpx2_request,
)
from nodes import received_notices
from nodes.audit import reading
from nodes.federation_tables import received_releases
from nodes.identity import load_current
from nodes.releases import received
from tests.federation import SCHEMA, Member, federation, now, query, weeks

URL = "http://xa.test/v1/notices"


@pytest.fixture(autouse=True)
def no_backoff() -> Iterator[None]:
    with stamina.set_testing(True, attempts=10, cap=True):
        yield


@pytest.fixture
def trio(stack: ExitStack, tmp_path: Path, database_urls: Iterator[str]) -> dict[str, Member]:
    return federation(stack, tmp_path, database_urls, ("XA", "XB", "XC"))


def correct(member: Member, week: str) -> list[dict[str, object]]:
    """Push the agency's corrected counts of one week: restated cells, one more case each."""
    rows = [
        {**row, "cases": int(str(row["cases"])) + 1}
        for row in outbreak_rows(member.nation, member.node.gazetteer, now().date())
        if row["week"] == week
    ]
    answer = member.http.post(
        f"/v1/reports/{SCHEMA}",
        content=as_csv(rows),
        headers={"Authorization": f"Bearer {member.agency_token}", "Content-Type": "text/csv"},
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["superseded_rows"] == len(rows)
    return rows


def audit(member: Member, action: str) -> list[dict[str, Any]]:
    page = reading.entries(member.node.engine, limit=reading.MAX_PAGE)
    return [e for e in page.entries if e["action"] == action]


def superseded(member: Member) -> dict[int, int | None]:
    with member.node.engine.connect() as conn:
        found = conn.execute(
            select(received_releases.c.id, received_releases.c.superseded_by_notice)
        ).all()
    return {int(i): n for i, n in found}


def test_the_partner_fetches_its_notice_marks_the_release_and_can_check_it_again(
    trio: dict[str, Member],
) -> None:
    xa, xb, xc = trio["XA"], trio["XB"], trio["XC"]
    pulled = pull(xb.node, xb.client_to(xa), query("area:adm1", "week"))
    assert superseded(xb) == {pulled.received_id: None}
    assert notice_client.fetch(xb.node, xb.client_to(xa)).fetched == 0
    corrected_week = weeks()[5]
    correct(xa, corrected_week)

    got = notice_client.fetch(xb.node, xb.client_to(xa))
    assert got.fetched == 1
    [kept] = received_notices.listing(xb.node.engine)
    assert kept.peer_id == "XA"
    assert kept.document["release_ids"] == [pulled.release["release_id"]]
    assert kept.document["weeks"] == [corrected_week]
    assert kept.superseded == (pulled.received_id,)
    assert superseded(xb) == {pulled.received_id: kept.id}
    # Fetching again brings nothing new: the partner asks from the last id it holds.
    again = notice_client.fetch(xb.node, xb.client_to(xa), after=kept.notice_id)
    assert (again.fetched, again.stored) == (0, [])
    assert notice_client.fetch(xb.node, xb.client_to(xa)).stored == []  # not kept twice

    # XC received nothing, so XC has no notice, and asking shows it none of XB's.
    assert notice_client.fetch(xc.node, xc.client_to(xa)).fetched == 0
    fetched = audit(xa, "notice.fetch")
    assert [(e["partner"], e["resource"]) for e in fetched] == [
        ("XB", f"notice:{kept.notice_id}"),
        ("XB", f"notice:{kept.notice_id}"),  # the second, full fetch delivered it again
    ]
    [created] = audit(xa, "notice.create")
    assert (created["partner"], created["resource"]) == ("XB", f"notice:{kept.notice_id}")

    # The kept evidence verifies again, and a changed byte does not.
    signature = notice_client.reverify(xb.node, kept)
    assert signature.key_id == load_current(xa.settings.keys_dir).kid
    forged = kept.response.body.replace(corrected_week.encode(), weeks()[6].encode())
    assert forged != kept.response.body
    tampered = replace(kept, response=received.RawResponse(200, kept.response.headers, forged))
    with pytest.raises(SignatureError):
        notice_client.reverify(xb.node, tampered)
    # The received release itself is untouched evidence: it still verifies.
    assert reverify(xb.node, received.get(xb.node.engine, pulled.received_id)).signature


def test_a_new_pull_after_a_correction_is_a_new_charged_release(
    trio: dict[str, Member],
) -> None:
    xa, xb = trio["XA"], trio["XB"]
    first = pull(xb.node, xb.client_to(xa), query("area:adm1", "week"))
    correct(xa, weeks()[2])
    second = pull(xb.node, xb.client_to(xa), query("area:adm1", "week"))
    assert second.release["release_id"] != first.release["release_id"]
    assert second.release["epsilon_spent"] > 0
    notice_client.fetch(xb.node, xb.client_to(xa))
    marks = superseded(xb)
    assert marks[first.received_id] is not None
    assert marks[second.received_id] is None


def _message(body: bytes = b'{"from":0}') -> RequestMessage:
    return RequestMessage("POST", URL, (("Content-Type", "application/json"),), body)


def _flip(message: RequestMessage) -> RequestMessage:
    value = message.header("signature") or ""
    raw = bytearray(base64.b64decode(value.split(":")[1]))
    raw[0] ^= 1
    kept = tuple((n, v) for n, v in message.headers if n.lower() != "signature")
    return replace(
        message, headers=(*kept, ("Signature", f"sig1=:{base64.b64encode(bytes(raw)).decode()}:"))
    )


@pytest.mark.parametrize("how", ["unsigned", "unknown key", "bad signature", "changed body"])
def test_a_fetch_not_signed_by_a_partner_is_401_and_fetches_nothing(
    trio: dict[str, Member], how: str
) -> None:
    xa, xb = trio["XA"], trio["XB"]
    pull(xb.node, xb.client_to(xa), query("area:adm1", "week"))
    correct(xa, weeks()[4])
    key = load_current(xb.settings.keys_dir).private_key
    messages = {
        "unsigned": lambda: _message(),
        "unknown key": lambda: sign_request(
            _message(), private_key=Ed25519PrivateKey.generate(), now=now()
        ),
        "bad signature": lambda: _flip(sign_request(_message(), private_key=key, now=now())),
        "changed body": lambda: replace(
            sign_request(_message(), private_key=key, now=now()), body=b'{"from":1}'
        ),
    }
    answer = xa.http.send(to_httpx2_request(messages[how]()))
    assert answer.status_code == 401, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert "notices" not in answer.json()
    assert audit(xa, "notice.fetch") == []
    # ...while the same request, signed, is answered with the notice (signed).
    signed = xa.http.send(to_httpx2_request(sign_request(_message(), private_key=key, now=now())))
    assert signed.status_code == 200, signed.text
    assert "signature" in signed.headers
    assert len(json.loads(signed.content)["notices"]) == 1
    assert len(audit(xa, "notice.fetch")) == 1


def test_an_invalid_body_is_a_signed_422(trio: dict[str, Member]) -> None:
    xa, xb = trio["XA"], trio["XB"]
    key = load_current(xb.settings.keys_dir).private_key
    for body in (b'{"from":-1}', b'{"after":0}', b'{"from":"0"}', b"[]"):
        message = sign_request(_message(body), private_key=key, now=now())
        answer = xa.http.send(to_httpx2_request(message))
        assert answer.status_code == 422, (body, answer.text)
        assert "signature" in answer.headers
    assert audit(xa, "notice.fetch") == []


def test_the_notices_command_fetches_shows_and_marks(
    trio: dict[str, Member], monkeypatch: pytest.MonkeyPatch
) -> None:
    xa, xb = trio["XA"], trio["XB"]
    pulled = pull(xb.node, xb.client_to(xa), query("area:adm1", "week"))
    correct(xa, weeks()[3])
    # The command's HTTP client reaches XA's app in-process (only XA is asked: --peer).
    monkeypatch.setattr(httpx2, "Client", lambda *_a, **_k: contextlib.nullcontext(xa.http))
    monkeypatch.setattr(common.console, "_width", 240)
    directory = str(xb.settings.directory)
    result = CliRunner().invoke(app, ["notices", directory, "--peer", "XA"])
    assert result.exit_code == 0, result.output
    assert "XA: 1 notice(s) fetched, 1 new, signature verified" in result.output
    assert weeks()[3] in result.output
    assert f"received #{pulled.received_id}" in result.output
    listed = CliRunner().invoke(app, ["received", "list", directory])
    assert listed.exit_code == 0, listed.output
    assert "(superseded: notice #1)" in listed.output
    shown = CliRunner().invoke(app, ["received", "show", directory, str(pulled.received_id)])
    assert "Superseded: the provider corrected data it covered" in shown.output
    # Again: nothing new waits (it asks after the last notice held).
    again = CliRunner().invoke(app, ["notices", directory, "--peer", "XA"])
    assert "XA: 0 notice(s) fetched, 0 new" in again.output
    assert "1 correction notice(s) received" in again.output
