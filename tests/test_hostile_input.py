"""What a request can send is bounded, and each hostile shape gets a clear 4xx problem+json
that stores nothing: JSON the standard library would take, headers, encodings, methods."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

import jsonschema_rs
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from starlette.requests import Request
from starlette.types import Message

from exchange.api import problems
from exchange.api.bodies import read_body
from exchange.api.problems import ClientDisconnectedError, RequestTimeoutError
from exchange.api.request_guards import MAX_AUTHORIZATION
from nodes.node import Node
from nodes.tables import cell_tables
from tests.samples import WEEKLY_HEADER, weekly_rows
from tests.test_api_errors import assert_problem
from tests.test_push_api import PUSH, stored_counts

LINE_LIST = "/v1/reports/line_list@1"
CASE = {
    "case_id": "c-1",
    "area": "XA-P1-D2",
    "report_date": "2026-01-01",
    "age_band": "5-14",
    "sex": "female",
    "outcome": "recovered",
}


def line_list_rows(node: Node) -> int:
    with node.engine.connect() as conn:
        count: int = conn.execute(
            select(func.count()).select_from(cell_tables["line_list@1"])
        ).scalar_one()
    return count


def post_json(client: TestClient, path: str, body: bytes, headers: dict[str, str]) -> Any:
    return client.post(path, content=body, headers={**headers, "Content-Type": "application/json"})


ROW = json.dumps(weekly_rows()[0])


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nests too deeply"),
        (b'{"rows": [' + ROW[:-1].encode() + b', "tests": ' + b"9" * 5000 + b"}]}", "5000 digits"),
        (b'{"rows": [], "rows": []}', "'rows' appears twice"),
        (b'{"rows": [{"area": "XA-P1-D1", "area": "XA-P1-D2"}]}', "'area' appears twice"),
        (b'{"rows": [{"area": "\\ud800"}]}', "lone UTF-16 surrogate"),
        (b'{"rows": [{"\\udc00area": "XA-P1-D1"}]}', "lone UTF-16 surrogate"),
        (b'{"rows": [{"cases": NaN}]}', "NaN is not a JSON value"),
        (b'{"rows": [{"area": "\xed\xa0\x80"}]}', "not UTF-8"),
    ],
    ids=[
        "deep",
        "long-int",
        "dup-envelope",
        "dup-row",
        "surrogate-value",
        "surrogate-key",
        "nan",
        "raw-surrogate",
    ],
)
def test_json_the_standard_library_accepts_is_refused(
    client: TestClient, agency: dict[str, str], node: Node, body: bytes, needle: str
) -> None:
    response = post_json(client, PUSH, body, agency)
    assert_problem(response, 422, needle)
    response.content.decode("utf-8")  # the answer itself is valid UTF-8
    assert stored_counts(node) == (0, 0)


def test_a_lone_surrogate_in_a_case_id_is_refused(
    client: TestClient, agency: dict[str, str], node: Node
) -> None:
    body = json.dumps({"rows": [{**CASE, "case_id": "c-\ud83d"}]}).encode()
    assert_problem(post_json(client, LINE_LIST, body, agency), 422, "surrogate")
    assert line_list_rows(node) == 0


@pytest.mark.parametrize("character", ["\x00", "\x07", "\x1b", "\x7f", "\x85"])
def test_control_characters_in_text_are_refused_on_both_backends(
    client: TestClient, agency: dict[str, str], node: Node, character: str
) -> None:
    body = json.dumps({"rows": [{**CASE, "case_id": f"c{character}1"}]}).encode()
    problem = assert_problem(post_json(client, LINE_LIST, body, agency), 422, "control character")
    assert problem["errors"][0]["field"] == "case_id"  # type: ignore[index]
    csv = ",".join(CASE) + "\n" + ",".join({**CASE, "case_id": f"c{character}2"}.values()) + "\n"
    response = client.post(
        LINE_LIST, content=csv.encode(), headers={**agency, "Content-Type": "text/csv"}
    )
    assert_problem(response, 422, f"U+{ord(character):04X}")
    assert line_list_rows(node) == 0


def test_printable_text_is_still_stored(
    client: TestClient, agency: dict[str, str], node: Node
) -> None:
    body = json.dumps({"rows": [{**CASE, "case_id": "cas-é-١"}]}).encode()
    assert post_json(client, LINE_LIST, body, agency).status_code == 201
    assert line_list_rows(node) == 1


def test_a_header_of_many_unknown_names_gets_a_short_answer(
    client: TestClient, agency: dict[str, str], node: Node
) -> None:
    header = ",".join([*WEEKLY_HEADER, *(f"junk{i:07d}" for i in range(200_000))])
    response = client.post(
        PUSH, content=header.encode() + b"\n", headers={**agency, "Content-Type": "text/csv"}
    )
    assert_problem(response, 422, "200008 columns")
    assert len(response.content) < 2000
    assert stored_counts(node) == (0, 0)


def test_unknown_json_fields_are_named_up_to_a_cap(
    client: TestClient, agency: dict[str, str], node: Node
) -> None:
    row = {**weekly_rows()[0], **{f"junk{i:04d}" + "x" * 500: 1 for i in range(1000)}}
    response = client.post(PUSH, json={"rows": [row]}, headers=agency)
    problem = assert_problem(response, 422, "unknown field", "(and 990 more)")
    assert len(str(problem["detail"])) <= problems.MAX_DETAIL + 10
    assert len(response.content) < 3000


def test_problem_details_cap_what_they_echo() -> None:
    response = problems.problem_response(422, "Invalid request", "x" * 100_000)
    assert len(response.body) < problems.MAX_DETAIL + 200


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "x-unknown"])
def test_a_content_encoding_is_refused_not_ignored(
    client: TestClient, agency: dict[str, str], node: Node, coding: str
) -> None:
    body = json.dumps({"rows": weekly_rows()}).encode()
    response = client.post(
        PUSH,
        content=body,
        headers={**agency, "Content-Type": "application/json", "Content-Encoding": coding},
    )
    assert_problem(response, 415, "Content-Encoding")
    assert stored_counts(node) == (0, 0)


def test_identity_encoding_and_a_utf8_charset_are_read(
    client: TestClient, agency: dict[str, str]
) -> None:
    body = json.dumps({"rows": weekly_rows()}).encode()
    headers = {
        **agency,
        "Content-Type": 'application/json; charset="UTF-8"',
        "Content-Encoding": "identity",
    }
    assert client.post(PUSH, content=body, headers=headers).status_code == 201


@pytest.mark.parametrize("charset", ["latin-1", "utf-16", "windows-1252"])
def test_a_charset_other_than_utf8_is_refused(
    client: TestClient, agency: dict[str, str], node: Node, charset: str
) -> None:
    response = client.post(
        PUSH,
        content=json.dumps({"rows": weekly_rows()}).encode(),
        headers={**agency, "Content-Type": f"application/json; charset={charset}"},
    )
    assert_problem(response, 415, charset, "UTF-8")
    assert stored_counts(node) == (0, 0)


def test_an_oversized_authorization_header_is_431(client: TestClient, node: Node) -> None:
    headers = {"Authorization": "Bearer " + "x" * MAX_AUTHORIZATION}
    assert_problem(client.post(PUSH, json={"rows": weekly_rows()}, headers=headers), 431)
    assert_problem(client.get("/v1/reports", headers=headers), 431, "Authorization")
    assert stored_counts(node) == (0, 0)


def _push_scope(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """An ASGI scope for a push, with the raw headers given."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": PUSH,
        "raw_path": PUSH.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }


def _asgi(app: Any, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> list[Message]:
    """One raw ASGI request: headers the HTTP client would not send as given."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(_push_scope(headers), receive, send))
    return sent


@pytest.mark.parametrize(
    "lengths", [[b"abc"], [b"-1"], [b"1e3"], [b" 12"], [b"9" * 40], [b"3", b"4"]]
)
def test_a_malformed_content_length_is_a_400_problem(
    client: TestClient, node: Node, lengths: list[bytes]
) -> None:
    headers = [(b"content-type", b"application/json")]
    headers += [(b"content-length", length) for length in lengths]
    start, body = _asgi(client.app, headers, b"{}")[:2]
    assert start["status"] == 400
    assert (b"content-type", b"application/problem+json") in start["headers"]
    assert "Content-Length" in json.loads(body["body"])["detail"]
    assert stored_counts(node) == (0, 0)


def _request(receive: Any) -> Request:
    return Request({"type": "http", "method": "POST", "path": PUSH, "headers": []}, receive)


def test_a_body_that_trickles_in_meets_a_deadline() -> None:
    async def trickle() -> Message:
        await asyncio.sleep(0.01)  # a byte now and then, never the end
        return {"type": "http.request", "body": b"x", "more_body": True}

    with pytest.raises(RequestTimeoutError, match="did not arrive within"):
        asyncio.run(read_body(_request(trickle), 1 << 20, deadline=0.2))


def test_a_client_hanging_up_mid_body_is_logged_once_at_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    messages: list[Message] = [
        {"type": "http.request", "body": b"area,week", "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> Message:
        return messages.pop(0)

    with caplog.at_level(logging.DEBUG, logger="exchange"), pytest.raises(ClientDisconnectedError):
        asyncio.run(read_body(_request(receive), 1 << 20))
    records = [r for r in caplog.records if r.name.startswith("exchange")]
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (logging.INFO, f"client hung up mid-body on POST {PUSH}")
    ]


def test_a_disconnect_through_the_app_is_no_unhandled_error(
    client: TestClient, agency: dict[str, str], node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    headers = [(b"content-type", b"text/csv")]
    headers += [(k.lower().encode(), v.encode()) for k, v in agency.items()]
    messages: list[Message] = [
        {"type": "http.request", "body": b"area,week", "more_body": True},
        {"type": "http.disconnect"},
    ]
    with caplog.at_level(logging.INFO):
        sent = _disconnecting(client.app, headers, messages)
    assert sent[0]["status"] == 400
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.levelno for r in caplog.records if "hung up" in r.getMessage()] == [logging.INFO]
    assert stored_counts(node) == (0, 0)


def _disconnecting(app: Any, headers: list[tuple[bytes, bytes]], messages: list[Message]) -> Any:
    sent: list[Message] = []

    async def receive() -> Message:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(_push_scope(headers), receive, send))
    return sent


def _concrete(path: str) -> str:
    """Templates that share a shape share a concrete path, as they share requests."""
    return re.sub(r"\{[^}]+\}", "1", path)


def test_options_lists_every_documented_method_and_others_get_405(client: TestClient) -> None:
    paths: dict[str, dict[str, Any]] = client.get("/openapi.json").json()["paths"]
    served: dict[str, set[str]] = {}
    for template, operations in paths.items():
        served.setdefault(_concrete(template), set()).update(m.upper() for m in operations)
    assert len(served) >= 14
    for path, methods in served.items():
        options = client.options(path)
        assert options.status_code == 204, path
        allowed = {m.strip() for m in options.headers["allow"].split(",")}
        assert allowed == methods | {"OPTIONS"}, path
        for method in {"GET", "POST", "PUT", "PATCH", "DELETE"} - allowed:
            response = client.request(method, path)
            assert_problem(response, 405, method)
            assert response.headers["allow"] == options.headers["allow"]


def test_options_on_an_unknown_path_is_404(client: TestClient) -> None:
    assert_problem(client.options("/v1/nothing-here"), 404)


def _push_schema(client: TestClient) -> dict[str, Any]:
    spec = client.get("/openapi.json").json()
    operation = spec["paths"]["/v1/reports/{schema_id}"]["post"]
    schema: dict[str, Any] = operation["requestBody"]["content"]["application/json"]["schema"]
    return schema


@pytest.mark.parametrize(
    "body",
    [
        {"rows": []},
        {"rows": [{}]},
        {"rows": [1]},
        {"rows": [{"area": ["XA-P1-D1"]}]},
        {"rows": [{"area": {"nested": 1}}]},
        {"rows": [{"cases": -1}]},
        {"rows": [{"cases": 10**12}]},
        {"rows": [{"cases": 1.5}]},
        {"rows": [{"colour": "red"}]},
        {"rows": [{"case_id": "x" * 65}]},
        {"rows": [{"case_id": "a\u0000b"}]},
        {"rows": [{"case_id": "a\u009fb"}]},
        {"rows": [{"cases": True}]},
        {"rows": [dict.fromkeys(WEEKLY_HEADER, 1) | {"case_id": "c"}]},
        {"rows": [weekly_rows()[0]], "extra": 1},
    ],
)
def test_the_documented_push_schema_refuses_what_validation_refuses(
    client: TestClient, agency: dict[str, str], node: Node, body: dict[str, Any]
) -> None:
    assert not jsonschema_rs.validator_for(_push_schema(client)).is_valid(body)
    for path in (PUSH, LINE_LIST):
        assert client.post(path, json=body, headers=agency).status_code == 422
    assert stored_counts(node) == (0, 0)


def test_the_documented_push_schema_accepts_valid_pushes(client: TestClient) -> None:
    documented = jsonschema_rs.validator_for(_push_schema(client))
    assert documented.is_valid({"rows": weekly_rows()})
    assert documented.is_valid({"rows": [CASE], "generated_at": "2026-01-05T10:00:00Z"})
