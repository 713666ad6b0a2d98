"""Hostile requests against a real ``exchange serve`` on loopback, where uvicorn's HTTP
parser (h11) sees the bytes before the app does."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest

from exchange.api.http_protocol import MAX_HEAD_BYTES
from exchange.api.request_guards import MAX_AUTHORIZATION
from nodes import tokens
from nodes.directory import init_node
from nodes.node import Node
from nodes.settings import NodeSettings
from tests.conftest import now
from tests.servers import kill_hard, start_server

pytestmark = pytest.mark.slow

PUSH = "/v1/reports/weekly_epi@1"


def agency_node(directory: Path) -> tuple[NodeSettings, str]:
    """A fresh node in ``directory`` and the secret of an agency that may push weekly_epi."""
    settings, _key = init_node(directory / "XA", node_id="XA", name="XA")
    node = Node.open(settings)
    try:
        _record, secret = tokens.issue_token(
            node.engine, name="moh", role="agency", schemas=("weekly_epi@1",), now=now()
        )
    finally:
        node.close()
    return settings, secret


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str]]:
    """A served node: its port and an agency secret."""
    settings, secret = agency_node(tmp_path_factory.mktemp("hostile"))
    server, port = start_server(settings.directory)
    try:
        yield port, secret
    finally:
        kill_hard(server)


def exchange_bytes(port: int, request: bytes, *, close_early: bool = False) -> bytes:
    """Send raw bytes; the whole answer, read until the server closes or answers in full."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        # A server may answer an oversized request before reading all of it: read the answer.
        with contextlib.suppress(BrokenPipeError):
            connection.sendall(request)
        if close_early:
            return b""
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
            head, _, body = answer.partition(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                None,
            )
            if length is not None and len(body) >= length:
                break
        return answer


def parse(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    return int(status_line.split()[1]), headers, body


def request(port: int, headers: dict[str, str], body: bytes = b"", method: str = "POST") -> bytes:
    lines = [f"{method} {PUSH} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def test_a_malformed_content_length_is_a_400_problem_from_the_parser(
    served: tuple[int, str],
) -> None:
    """h11 refuses it before the app sees the request; our protocol answers problem+json."""
    port, secret = served
    for length in ("abc", "-1", "1, 2"):
        status, headers, body = parse(
            exchange_bytes(
                port,
                request(port, {"Authorization": f"Bearer {secret}", "Content-Length": length}),
            )
        )
        assert status == 400, length
        assert headers["connection"] == "close"
        assert headers["content-type"] == "application/problem+json"
        assert "Content-Length" in json.loads(body)["detail"]


def test_a_content_encoding_is_415_problem_json(served: tuple[int, str]) -> None:
    port, secret = served
    body = b'{"rows": []}'
    status, headers, answer = parse(
        exchange_bytes(
            port,
            request(
                port,
                {
                    "Authorization": f"Bearer {secret}",
                    "Content-Type": "application/json",
                    "Content-Encoding": "gzip",
                    "Content-Length": str(len(body)),
                },
                body,
            ),
        )
    )
    assert status == 415
    assert headers["content-type"] == "application/problem+json"
    assert "Content-Encoding" in json.loads(answer)["detail"]


def test_an_oversized_authorization_is_431_problem_json_not_a_reset(
    served: tuple[int, str],
) -> None:
    port, _ = served
    # Past h11's default 16 KiB bound, under the 64 KiB that ``exchange serve`` sets.
    token = "Bearer " + "x" * (5 * MAX_AUTHORIZATION)
    status, headers, answer = parse(
        exchange_bytes(port, request(port, {"Authorization": token, "Content-Length": "0"}))
    )
    assert status == 431
    assert headers["content-type"] == "application/problem+json"
    assert "Authorization" in json.loads(answer)["detail"]


def test_a_head_past_the_parser_bound_is_a_400_problem(served: tuple[int, str]) -> None:
    """Past 64 KiB h11 stops reading; the answer is still problem+json, not a reset."""
    port, _ = served
    head = request(port, {"Authorization": "Bearer " + "x" * (16 * MAX_HEAD_BYTES)})
    status, headers, body = parse(exchange_bytes(port, head))
    assert status == 400
    assert headers["content-type"] == "application/problem+json"
    assert str(MAX_HEAD_BYTES) in json.loads(body)["detail"]


def test_a_wrong_method_is_405_with_allow(served: tuple[int, str]) -> None:
    port, _ = served
    status, headers, _body = parse(exchange_bytes(port, request(port, {}, method="DELETE")))
    assert status == 405
    assert headers["allow"] == "GET, OPTIONS, POST"
    assert headers["content-type"] == "application/problem+json"
    status, headers, _ = parse(exchange_bytes(port, request(port, {}, method="OPTIONS")))
    assert status == 204
    assert headers["allow"] == "GET, OPTIONS, POST"


def test_a_client_hanging_up_mid_body_is_logged_once_at_info(tmp_path: Path) -> None:
    """Its own server, so its log holds only this: one info line, no unhandled error."""
    settings, secret = agency_node(tmp_path)
    server, port = start_server(settings.directory)
    watchdog = threading.Timer(60, server.kill)  # a server that never logs it ends the wait
    watchdog.start()
    rest = ""
    try:
        headers = {
            "Authorization": f"Bearer {secret}",
            "Content-Type": "text/csv",
            "Content-Length": "100000",
        }
        exchange_bytes(port, request(port, headers, b"area,week\n"), close_early=True)
        assert server.stderr is not None
        lines = [server.stderr.readline().decode()]  # blocks until the server logs the hang-up
        while "hung up mid-body" not in lines[-1] and lines[-1]:
            lines.append(server.stderr.readline().decode())
        status, _, _ = parse(exchange_bytes(port, request(port, {}, method="OPTIONS")))
        assert status == 204  # still serving
    finally:
        watchdog.cancel()
        with suppress(ProcessLookupError):
            rest = kill_hard(server)
    log = "".join(lines) + rest
    hung_up = [line for line in log.splitlines() if "hung up mid-body" in line]
    assert len(hung_up) == 1, log
    assert "info" in hung_up[0].lower(), log
    assert "unhandled" not in log, log
    assert "Traceback" not in log, log
