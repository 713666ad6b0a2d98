"""A signed release query is decoded strictly and its documented schema is as strict as its
validation: what the JSON decoder lets through silently (a duplicate key, deep nesting, a
thousand-digit integer) gets a signed 422 and charges nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from pydantic import ValidationError

from exchange.api.routes.policy import PolicyCheck
from exchange.signing.signatures import RequestMessage, sign_request, to_httpx2_request
from nodes.identity import load_current
from policies.query import ReleaseQuery
from tests.federation import Member, federation, now, query
from tests.test_openapi_fuzz import APP

URL = "http://xa.test/v1/releases"


@pytest.fixture
def pair(stack: ExitStack, tmp_path: Path, database_urls: Iterator[str]) -> dict[str, Member]:
    return federation(stack, tmp_path, database_urls, ("XA", "XB"))


def _valid() -> str:
    return query().model_dump_json()


BODIES: dict[str, tuple[bytes, str]] = {
    "duplicate key": (
        ('{"schema_id":"weekly_epi@1",' + _valid()[1:]).encode(),
        "appears twice",
    ),
    "deep nesting": (
        (
            '{"schema_id":"weekly_epi@1","filters":{"area":' + "[" * 5000 + "]" * 5000 + "}}"
        ).encode(),
        "nests too deeply",
    ),
    "1000-digit integer": (
        ('{"schema_id":"weekly_epi@1","measures":[' + "9" * 1000 + "]}").encode(),
        "1000 digits",
    ),
}


@pytest.mark.parametrize("case", list(BODIES))
def test_a_signed_query_the_strict_decoder_refuses_gets_a_signed_422(
    pair: dict[str, Member], case: str
) -> None:
    xa, xb = pair["XA"], pair["XB"]
    body, said = BODIES[case]
    message = RequestMessage("POST", URL, (("Content-Type", "application/json"),), body)
    key = load_current(xb.settings.keys_dir).private_key
    before = xa.counts()
    answer = xa.http.send(to_httpx2_request(sign_request(message, private_key=key, now=now())))
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert "signature" in answer.headers  # signed: the partner can prove it was refused
    assert said in answer.json()["detail"]
    after = xa.counts()
    assert after["spent_micro"] == before["spent_micro"]
    assert after["releases"] == before["releases"]


def test_the_same_body_once_is_answered(pair: dict[str, Member]) -> None:
    """The duplicate-key body above differs from a valid one by the duplicate alone."""
    xa, xb = pair["XA"], pair["XB"]
    message = RequestMessage(
        "POST", URL, (("Content-Type", "application/json"),), _valid().encode()
    )
    key = load_current(xb.settings.keys_dir).private_key
    answer = xa.http.send(to_httpx2_request(sign_request(message, private_key=key, now=now())))
    assert answer.status_code == 200, answer.text


def test_an_unsigned_body_the_decoder_refuses_is_still_401(pair: dict[str, Member]) -> None:
    body, _said = BODIES["duplicate key"]
    answer = pair["XA"].http.post(
        "/v1/releases", content=body, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 401


def _documented(schema: dict[str, Any]) -> jsonschema_rs.Validator:
    """A validator of ``schema`` resolving ``#/components/...`` in the app's OpenAPI document."""
    document = APP.openapi()
    return jsonschema_rs.validator_for({**schema, "components": document["components"]})


def _release_body() -> jsonschema_rs.Validator:
    post = APP.openapi()["paths"]["/v1/releases"]["post"]
    return _documented(post["requestBody"]["content"]["application/json"]["schema"])


def _check_body() -> jsonschema_rs.Validator:
    return _documented({"$ref": "#/components/schemas/PolicyCheck"})


GOOD: dict[str, Any] = {
    "schema_id": "weekly_epi@1",
    "measures": ["cases", "deaths"],
    "group_by": ["area:adm1", "week:month"],
    "filters": {"sex": ["f"], "area": ["XA01", "XA02"]},
    "since": "2026-W01",
    "until": "2026W10",
    "purpose": "outbreak_response",
}

REFUSED: dict[str, dict[str, Any]] = {
    "unknown field": {**GOOD, "limit": 3},
    "no schema": {k: v for k, v in GOOD.items() if k != "schema_id"},
    "empty schema": {**GOOD, "schema_id": ""},
    "over-long schema": {**GOOD, "schema_id": "s" * 65},
    "schema as a number": {**GOOD, "schema_id": 1},
    "measure as a boolean": {**GOOD, "measures": [True]},
    "measure misspelt": {**GOOD, "measures": ["Cases"]},
    "measure listed twice": {**GOOD, "measures": ["cases", "cases"]},
    "too many measures": {**GOOD, "measures": [f"m{i}" for i in range(33)]},
    "group by garbage": {**GOOD, "group_by": ["area::adm1"]},
    "group by listed twice": {**GOOD, "group_by": ["week", "week"]},
    "too many groups": {**GOOD, "group_by": [f"d{i}" for i in range(9)]},
    "filter name misspelt": {**GOOD, "filters": {"Sex": ["f"]}},
    "filter without values": {**GOOD, "filters": {"sex": []}},
    "filter with an empty value": {**GOOD, "filters": {"sex": [""]}},
    "filter value too long": {**GOOD, "filters": {"sex": ["f" * 65]}},
    "filter value a number": {**GOOD, "filters": {"sex": [1]}},
    "too many filter values": {**GOOD, "filters": {"area": [f"a{i}" for i in range(1001)]}},
    "too many filters": {**GOOD, "filters": {f"d{i}": ["x"] for i in range(9)}},
    "filters a list": {**GOOD, "filters": [["sex", "f"]]},
    "week misspelt": {**GOOD, "since": "2026-01"},
    "week in other digits": {**GOOD, "until": "\u0662\u0660\u0662\u0666W1"},
    "purpose misspelt": {**GOOD, "purpose": "Outbreak response"},
    "purpose as a boolean": {**GOOD, "purpose": False},
}


def test_a_valid_query_passes_validation_and_both_documented_schemas() -> None:
    ReleaseQuery.model_validate(GOOD)
    assert _release_body().is_valid(GOOD)
    assert _check_body().is_valid({"partner_id": "XB", "query": GOOD})
    assert _release_body().is_valid({"schema_id": "weekly_epi@1"})


@pytest.mark.parametrize("case", list(REFUSED))
def test_the_documented_schemas_refuse_what_validation_refuses(case: str) -> None:
    body = REFUSED[case]
    with pytest.raises(ValidationError):
        ReleaseQuery.model_validate(body)
    with pytest.raises(ValidationError):
        PolicyCheck.model_validate_json(json.dumps({"partner_id": "XB", "query": body}))
    assert not _release_body().is_valid(body)
    assert not _check_body().is_valid({"partner_id": "XB", "query": body})


@pytest.mark.parametrize(
    "check",
    [
        {"partner_id": "XB", "query": GOOD, "dry_run": True},
        {"partner_id": "X", "query": GOOD},
        {"partner_id": 7, "query": GOOD},
        {"partner_id": "XB"},
    ],
)
def test_the_policy_check_body_is_as_strict_as_its_validation(check: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        PolicyCheck.model_validate_json(json.dumps(check))
    assert not _check_body().is_valid(check)
