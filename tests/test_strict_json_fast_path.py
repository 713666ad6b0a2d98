"""``strict_json.loads`` takes orjson's fast path only where the standard library's strict
path would answer the same: these tests compare the two on hostile and generated texts."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange.api import strict_json


def outcome(decode: Any, body: bytes) -> tuple[str, Any]:
    try:
        return "ok", decode(body)
    except strict_json.StrictJsonError as exc:
        return "refused", exc.message.english()


def agree(body: bytes) -> tuple[str, Any]:
    fast, strict = outcome(strict_json.loads, body), outcome(strict_json._strict_loads, body)
    assert fast == strict, body[:200]
    return fast


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"a": 1, "a": 2}', "refused"),
        (b'{"a": 1, "b": {"c": 1, "c": 2}}', "refused"),
        (b'[{"a": 1}, {"b": 2, "b": 3}]', "refused"),
        (b'{"a" \n : 1, "a"\t: 2}', "refused"),
        (b'{"a": "x\\": y", "a": 2}', "refused"),  # a key end inside a value hides nothing
        (b'{"a": "x\\": y"}', "ok"),
        (b'{"rows": [{"a": [1, {"b": 2}]}]}', "ok"),
        (b"[NaN]", "refused"),
        (b"[Infinity]", "refused"),
        (b"[" + b"9" * 20 + b"]", "refused"),
        (b'["\\ud800"]', "refused"),
        (b'["\\u00e9"]', "ok"),
        (b"\xef\xbb\xbf{}", "refused"),
        (b"\xff", "refused"),
        (b"[" * 300 + b"]" * 300, "ok"),  # deeper than the fast path goes: strict decides
        (b"[" * 5000 + b"]" * 5000, "refused"),
        (b"", "refused"),
        (b'{"a": 1} x', "refused"),
    ],
)
def test_the_fast_path_answers_as_the_strict_one(body: bytes, expected: str) -> None:
    assert agree(body)[0] == expected


def test_rows_with_every_kind_of_value_decode_alike() -> None:
    rows = [
        {"area": "XA-P1", "cases": 5, "ratio": 0.5, "flag": True, "note": None, "é": "ü"}
        for _ in range(100)
    ]
    body = json.dumps({"rows": rows}, ensure_ascii=False).encode()
    assert agree(body) == ("ok", {"rows": rows})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(st.tuples(st.sampled_from(["a", "b", '"', "\\", ":"]), inner), max_size=4)
    ),
    max_leaves=12,
)


def render(value: Any) -> str:
    """JSON text that may repeat keys (objects are lists of pairs) and hold NaN."""
    if isinstance(value, list) and value and all(isinstance(v, tuple) for v in value):
        return "{" + ", ".join(f"{json.dumps(k)} : {render(v)}" for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + ",".join(render(v) for v in value) + "]"
    return json.dumps(value)


@given(json_values)
def test_generated_documents_decode_alike(value: Any) -> None:
    agree(render(value).encode())


@given(st.binary(max_size=40))
def test_generated_bytes_decode_alike(body: bytes) -> None:
    agree(body)
