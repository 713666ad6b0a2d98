"""Problem titles and details follow ``Accept-Language`` through the real app; ``type`` does not.

Expected sentences come from the ``.po`` files, read here with Babel's own parser and filled
with Babel's number formatting: not through ``exchange.i18n``, whose rendering is under test.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from typing import Any

import pytest
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from fastapi.testclient import TestClient
from httpx2 import Response

from exchange import i18n
from nodes.node import Node
from tests.samples import as_csv, weekly_rows
from tests.test_push_api import PUSH, stored_counts
from tests.test_upload_sessions import UPLOADS, open_upload, put

TRANSLATED = ("fr", "es", "ar")


@cache
def msgstr(language: str, msgid: str) -> str:
    """The catalog's translation of ``msgid``, or a failure when there is none."""
    path = i18n.LOCALES / language / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as po:
        message = read_po(po, locale=language).get(msgid)
    assert message is not None, f"{language} lacks {msgid!r}"
    assert message.string, f"{language} lacks {msgid!r}"
    assert isinstance(message.string, str)
    return message.string


def numbers(language: str, **values: int) -> dict[str, str]:
    """Integers as a reader of ``language`` writes them (English keeps plain digits)."""
    if language == "en":
        return {k: str(v) for k, v in values.items()}
    return {k: format_decimal(v, locale=language) for k, v in values.items()}


def expected(language: str, msgid: str, **params: str) -> str:
    return (msgid if language == "en" else msgstr(language, msgid)).format(**params)


#: Each case: the request, its status, English title, detail msgid and its params by language.
Send = Callable[[TestClient, dict[str, str], Node], Response]
Params = Callable[[Node, str], dict[str, str]]


def too_large(client: TestClient, agency: dict[str, str], node: Node) -> Response:
    limit = node.settings.max_body_bytes
    headers = {**agency, "Content-Type": "text/csv", "Content-Length": str(limit + 1)}
    return client.post(PUSH, content=b"x", headers=headers)


def too_large_params(node: Node, language: str) -> dict[str, str]:
    limit = node.settings.max_body_bytes
    return numbers(language, declared=limit + 1, limit=limit)


def xml(client: TestClient, agency: dict[str, str], _node: Node) -> Response:
    headers = {**agency, "Content-Type": "application/xml"}
    return client.post(PUSH, content=b"<xml/>", headers=headers)


def gzip(client: TestClient, agency: dict[str, str], _node: Node) -> Response:
    """Refused by the request guards, before any route: the lazily negotiated path."""
    headers = {**agency, "Content-Type": "application/json", "Content-Encoding": "gzip"}
    return client.post(PUSH, content=b"{}", headers=headers)


def unknown_field(client: TestClient, agency: dict[str, str], _node: Node) -> Response:
    row = {**weekly_rows()[0], "colour": "red"}
    return client.post(PUSH, json={"rows": [row]}, headers=agency)


def unknown_field_params(node: Node, _language: str) -> dict[str, str]:
    fields = ", ".join(f.name for f in node.registry.get("weekly_epi@1").fields)
    return {"names": "'colour'", "schema": "weekly_epi@1", "fields": fields}


def duplicate_key(client: TestClient, agency: dict[str, str], _node: Node) -> Response:
    headers = {**agency, "Content-Type": "application/json"}
    return client.post(PUSH, content=b'{"rows": [], "rows": []}', headers=headers)


def no_such_path(client: TestClient, agency: dict[str, str], _node: Node) -> Response:
    return client.get("/v1/nothing-here", headers=agency)


def no_token(client: TestClient, agency: dict[str, str], _node: Node) -> Response:
    headers = {k: v for k, v in agency.items() if k != "Authorization"}
    return client.post(PUSH, json={"rows": weekly_rows()}, headers=headers)


CASES: dict[str, tuple[Send, int, str, str, str | None, Params]] = {
    "413": (
        too_large,
        413,
        "Payload too large",
        "the body is {declared} bytes; this node accepts at most {limit} bytes per push",
        "body_too_large_declared",
        too_large_params,
    ),
    "415-type": (
        xml,
        415,
        "Unsupported media type",
        "Content-Type '{content_type}' is not read here; send application/json or text/csv",
        "content_type_not_read",
        lambda _node, _language: {"content_type": "application/xml"},
    ),
    "415-encoding": (
        gzip,
        415,
        "Unsupported media type",
        "this node reads no Content-Encoding (gzip, deflate, br): send the body uncompressed",
        "content_encoding_not_read",  # refused by the guards, before any route
        lambda _node, _language: {},
    ),
    "unknown-field": (
        unknown_field,
        422,
        "Invalid request",
        "unknown field(s) {names} for {schema}; its fields are {fields}",
        "unknown_fields",
        unknown_field_params,
    ),
    "duplicate-key": (
        duplicate_key,
        422,
        "Invalid request",
        "the key {key} appears twice in one object",
        "json_duplicate_key",
        lambda _node, _language: {"key": "'rows'"},
    ),
    "404": (
        no_such_path,
        404,
        "Not found",
        "nothing is served at this path",
        "no_such_path",
        lambda _node, _language: {},
    ),
    "401": (
        no_token,
        401,
        "Authentication required",
        "this endpoint needs 'Authorization: Bearer <token>'",
        "bearer_required",
        lambda _node, _language: {},
    ),
}


def problem(response: Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = json.loads(response.content.decode("utf-8"))
    return body


@pytest.mark.parametrize("language", TRANSLATED)
@pytest.mark.parametrize("case", sorted(CASES))
def test_title_and_detail_follow_accept_language(
    client: TestClient, agency: dict[str, str], node: Node, case: str, language: str
) -> None:
    send, status, title, msgid, code, params = CASES[case]
    english = problem(send(client, agency, node), status)
    asked = {**agency, "Accept-Language": f"{language}-XX;q=0.9, de;q=0.5"}
    answer = send(client, asked, node)
    body = problem(answer, status)
    assert answer.headers["content-language"] == language
    assert body["title"] == msgstr(language, title) != title
    assert body["detail"] == expected(language, msgid, **params(node, language))
    assert body["detail"] != english["detail"]
    assert (
        body["type"] == english["type"] == f"urn:exchange:problem:{title.lower().replace(' ', '-')}"
    )
    assert body.get("code") == english.get("code") == code
    assert stored_counts(node) == (0, 0)


@pytest.mark.parametrize("accept", [None, "de-DE, pt;q=0.8", "*", "fr;q=0"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_english_without_a_supported_language(
    client: TestClient, agency: dict[str, str], node: Node, case: str, accept: str | None
) -> None:
    send, status, title, msgid, _code, params = CASES[case]
    headers = agency if accept is None else {**agency, "Accept-Language": accept}
    answer = send(client, headers, node)
    body = problem(answer, status)
    assert answer.headers["content-language"] == "en"
    assert body["title"] == title
    assert body["detail"] == expected("en", msgid, **params(node, "en"))


def test_numbers_are_written_for_the_reader(
    client: TestClient, agency: dict[str, str], node: Node
) -> None:
    """English keeps the digits its logs and clients grep for; French groups them."""
    limit = node.settings.max_body_bytes
    assert limit >= 10_000  # so that grouping shows
    english = problem(too_large(client, agency, node), 413)["detail"]
    french = problem(too_large(client, {**agency, "Accept-Language": "fr"}, node), 413)["detail"]
    assert str(limit) in english
    assert str(limit) not in french
    assert format_decimal(limit, locale="fr") in french


def test_the_unknown_field_cap_holds_in_every_language(
    client: TestClient, agency: dict[str, str], node: Node
) -> None:
    row = {**weekly_rows()[0], **{f"junk{i:04d}" + "x" * 500: 1 for i in range(1000)}}
    for language in TRANSLATED:
        headers = {**agency, "Accept-Language": language}
        body = problem(client.post(PUSH, json={"rows": [row]}, headers=headers), 422)
        assert body["code"] == "unknown_fields_more"
        assert format_decimal(990, locale=language) in body["detail"]
        assert body["detail"].count("junk") == 10
        assert "x" * 65 not in body["detail"]


@pytest.mark.parametrize("language", TRANSLATED)
def test_upload_session_problems_follow_accept_language(
    client: TestClient, agency: dict[str, str], language: str
) -> None:
    """A commit with a part missing, and a part sent after the commit, in the reader's
    language; the English detail is still the sentence clients have been matching."""
    asked = {**agency, "Accept-Language": language}
    gap = open_upload(client, agency)
    put(client, agency, gap, 2, as_csv(weekly_rows()).encode())
    english = problem(client.post(f"{UPLOADS}/{gap}/commit", headers=agency), 422)
    assert english["detail"] == f"upload {gap} is not complete: part(s) 1 missing"
    body = problem(client.post(f"{UPLOADS}/{gap}/commit", headers=asked), 422)
    incomplete = "upload {upload} is not complete: part(s) {missing} missing"
    assert body["detail"] == expected(language, incomplete, upload=gap, missing="1")
    assert body["title"] == msgstr(language, "Invalid request")
    assert body["code"] == english["code"] == "upload_parts_missing"

    done = open_upload(client, agency)
    put(client, agency, done, 1, as_csv(weekly_rows()).encode())
    committed = client.post(f"{UPLOADS}/{done}/commit", headers=agency)
    assert committed.status_code == 201, committed.text
    report = committed.json()["report_id"]
    late = client.put(f"{UPLOADS}/{done}/parts/2", content=b"x", headers=asked)
    body = problem(late, 409)
    sentence = (
        "upload {upload} was committed as report {report}; open a new upload to send another report"
    )
    assert body["detail"] == expected(
        language, sentence, upload=done, **numbers(language, report=report)
    )
    assert body["detail"] != sentence.format(upload=done, report=report)
    assert body["title"] == msgstr(language, "Conflict")
    assert body["code"] == "upload_committed"
