"""Structured logs: JSON lines carrying the request id, and never a secret or a value."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient

from exchange.api.logs import JsonFormatter, accept_or_make, request_id
from nodes.settings import NodeSettings
from tests.samples import weekly_rows
from tests.servers import start_server

DISTINCTIVE = 48_611_937  # a report value that must never reach a log


@pytest.mark.parametrize("good", ["abc", "trace-1.2_3", "A" * 64])
def test_a_well_formed_request_id_is_kept(good: str) -> None:
    assert accept_or_make(good) == good


@pytest.mark.parametrize("bad", [None, "", "A" * 65, "has space", "new\nline", "x;drop", "é"])
def test_anything_else_gets_a_fresh_id(bad: str | None) -> None:
    made = accept_or_make(bad)
    assert made != bad
    assert len(made) == 32
    assert made.isalnum()


def test_the_request_id_comes_back_in_the_response(
    client: TestClient, agency: dict[str, str]
) -> None:
    mine = client.get("/healthz", headers={"X-Request-Id": "probe-7"})
    assert mine.headers["X-Request-Id"] == "probe-7"
    ours = client.get("/healthz", headers={"X-Request-Id": "bad id with spaces"})
    assert ours.headers["X-Request-Id"] not in ("bad id with spaces", "")
    a, b = client.get("/healthz"), client.get("/healthz")
    assert a.headers["X-Request-Id"] != b.headers["X-Request-Id"]
    refused = client.get("/v1/reports", headers={"X-Request-Id": "denied-1"})  # a problem
    assert refused.status_code == 401
    assert refused.headers["X-Request-Id"] == "denied-1"


def _record(message: str, exc_info: Any = None, args: Any = None) -> logging.LogRecord:
    return logging.LogRecord("exchange", logging.ERROR, __file__, 1, message, args, exc_info)


def test_a_line_is_json_with_the_request_id_and_no_exception_message() -> None:
    token = request_id.set("req-42")
    try:
        try:
            raise ValueError(f"input_value={DISTINCTIVE}")
        except ValueError:
            line = JsonFormatter().format(_record("pushing failed", sys.exc_info()))
    finally:
        request_id.reset(token)
    parsed = json.loads(line)
    assert parsed["request_id"] == "req-42"
    assert parsed["message"] == "pushing failed"
    assert parsed["level"] == "error"
    assert parsed["exception"]["type"] == "ValueError"
    assert str(DISTINCTIVE) not in line
    assert json.loads(JsonFormatter().format(_record("idle")))["request_id"] is None


def test_an_access_line_keeps_the_path_not_the_query() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("10.0.0.1:5000", "GET", "/v1/audit/entries?actor=token:s3cret", "1.1", 200),
        None,
    )
    parsed = json.loads(JsonFormatter().format(record))
    assert parsed["path"] == "/v1/audit/entries"
    assert parsed["status"] == 200
    assert "s3cret" not in json.dumps(parsed)


@pytest.mark.slow
def test_a_served_node_logs_json_lines_with_request_ids_and_no_secrets(
    settings: NodeSettings, agency_secret: str
) -> None:
    server, port = start_server(settings.directory)
    try:
        with httpx2.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            rows = weekly_rows(range(1, 3), cases=DISTINCTIVE)
            pushed = client.post(
                "/v1/reports/weekly_epi@1",
                json={"rows": rows},
                headers={"Authorization": f"Bearer {agency_secret}", "X-Request-Id": "push-1"},
            )
            assert pushed.status_code == 201
            assert pushed.headers["X-Request-Id"] == "push-1"
            refused = client.get(
                "/v1/audit/entries",
                params={"actor": "token:querysecret"},
                headers={"Authorization": "Bearer xt_wrong-secret-value", "Cookie": "s=cookie1"},
            )
            assert refused.status_code == 401
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        _out, err = server.communicate(timeout=30)
    lines = [json.loads(line) for line in err.decode().splitlines() if line.strip()]
    assert lines, "the server logged nothing"
    access = [line for line in lines if line["logger"] == "uvicorn.access"]
    (push,) = [line for line in access if line["request_id"] == "push-1"]
    assert (push["method"], push["path"], push["status"]) == (
        "POST",
        "/v1/reports/weekly_epi%401",  # as uvicorn quotes it
        201,
    )
    other = [line for line in access if line["path"] == "/v1/audit/entries"]
    assert len(other) == 1
    assert other[0]["request_id"]
    assert other[0]["status"] == 401
    text = err.decode()
    for secret in (agency_secret, "xt_wrong-secret-value", "querysecret", "cookie1"):
        assert secret not in text
    assert str(DISTINCTIVE) not in text
