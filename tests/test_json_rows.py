"""The msgspec fast paths read exactly what the strict decoder reads, or step aside.

``json_rows.columns_of_lines`` (JSON Lines uploads) and ``dhis2_json.data_values`` (DHIS2
data value sets) must give what ``strict_json.loads`` followed by the slow reader gives, or
None; never a different reading, and never a reading of what the strict decoder refuses.
Each is compared here with the standard library's own decoder (``json.loads`` with a pairs
hook that refuses repeated keys), on hostile lines and on generated ones.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from exchange.api import dhis2_json, json_rows, strict_json, upload_commit
from exchange.clients.push import PushError, _json_parts, _json_rows, push_file
from exchange.formats import dhis2_values
from exchange.formats.dhis2 import IdSchemes
from exchange.formats.dhis2_mapping import mapping_from_yaml
from nodes.directory import sample_gazetteer
from nodes.tables import cell_tables
from schemas.registry import SchemaRegistry
from schemas.standard import STANDARD_SCHEMAS
from schemas.validation import JsonColumns, ReportShapeError, json_columns
from tests.samples import weekly_rows
from tests.test_push_api import stored_counts

MAPPING = mapping_from_yaml(
    (Path(__file__).parents[1] / "docs" / "examples" / "dhis2.yaml").read_text(),
    SchemaRegistry(),
    sample_gazetteer("XA"),
)
UIDS = IdSchemes()
CODES = IdSchemes(data_element="CODE", org_unit="CODE", category_option_combo="CODE", other="CODE")
WEEKLY = next(s for s in STANDARD_SCHEMAS if s.id == "weekly_epi@1")
FIELDS = [f.name for f in WEEKLY.fields]


def python_loads(text: str) -> Any:
    """The standard library's reading, refusing what the node refuses (not ours)."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({k for k, _ in items}) != len(items):
            raise ValueError("duplicate key")
        return dict(items)

    def constant(name: str) -> Any:
        raise ValueError(name)

    return json.loads(text, object_pairs_hook=pairs, parse_constant=constant)


def slow_reading(lines: list[str]) -> JsonColumns | str:
    """What the strict path makes of the lines: columns, or why it refuses."""
    rows = []
    for line in lines:
        try:
            row = strict_json.loads(line.encode())
        except strict_json.StrictJsonError:
            return "refused"
        rows.append(row)
    try:
        return json_columns(WEEKLY, rows)
    except ReportShapeError:
        return "refused"


def same(fast: JsonColumns, slow: JsonColumns) -> bool:
    """Equal, with types: ``True`` is not ``1`` here (a count must not be a boolean)."""
    if (fast.names, fast.rows, fast.columns.keys()) != (slow.names, slow.rows, slow.columns.keys()):
        return False
    return all(
        [(type(v), v) for v in fast.columns[k]] == [(type(v), v) for v in slow.columns[k]]
        for k in fast.columns
    )


def agree(lines: list[str]) -> JsonColumns | None:
    fast = json_rows.columns_of_lines(WEEKLY, lines)
    slow = slow_reading(lines)
    if fast is not None:
        assert slow != "refused", lines
        assert isinstance(slow, JsonColumns) and same(fast, slow), lines
        for line in lines:  # and the standard library reads each line as we did
            assert isinstance(python_loads(line), dict)
    return fast


ROW = '{"area": "XA-P1-D1", "week": "2026-W05", "sex": "female", "cases": 3}'


@pytest.mark.parametrize(
    ("lines", "taken"),
    [
        ([ROW, ROW.replace("3", "4")], True),
        ([ROW + "\n", " \t" + ROW + "\r\n"], True),  # whitespace around a line, as sent
        (['{"area": "XA-P1-D1", "area": "XA-P1-D2"}'], False),  # a key given twice
        (['{"area" : "XA-P1-D1", "area"\n: "XA-P1-D2"}'], False),
        (['{"area": "x\\": y", "cases": 1}'], False),  # a key end inside a value: strict decides
        (['{"area": "XA-P1-D1", "cases": {"n": 1}}'], False),  # nested
        (['{"area": "XA-P1-D1", "cases": [1]}'], False),
        (['{"area": "XA-P1-D1", "unknown": 1}'], False),  # not the schema's
        (["[1, 2]"], False),  # not an object
        (['{"cases": NaN}'], False),
        (['{"cases": 1e999}'], False),
        (['{"cases": ' + "9" * 20 + "}"], False),
        (['{"area": "\\ud800"}'], False),
        (['{"area": "\\u0041"}'], False),  # any escape of that kind: strict decides
        ([ROW + " " + ROW], False),  # two objects on a line
        (['{"area": "XA-P1-D1"', '"cases": 1}'], False),  # one object over two lines
        (["", ROW], False),  # a blank line: the caller drops it, then asks again
        (['{"cases": true, "deaths": 1.0, "tests": -0, "admissions": null}'], True),
    ],
)
def test_hostile_lines_are_read_alike_or_left_to_the_strict_path(
    lines: list[str], taken: bool
) -> None:
    assert (agree(lines) is not None) == taken


scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**66), 2**66)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
    | st.sampled_from(['":', "\\", '"', "é", "x\ny"])
)
keys = st.sampled_from([*FIELDS, FIELDS[0], "other"])
objects = st.lists(st.tuples(keys, scalars), max_size=6)


def render(pairs: list[tuple[str, Any]], spaced: bool) -> str:
    """An object that may repeat a key, compact or spaced around its colons."""
    colon = " : " if spaced else ":"
    return "{" + ",".join(f"{json.dumps(k)}{colon}{json.dumps(v)}" for k, v in pairs) + "}"


@given(st.lists(st.tuples(objects, st.booleans()), min_size=1, max_size=5))
def test_generated_lines_are_read_alike(rows: list[tuple[list[tuple[str, Any]], bool]]) -> None:
    agree([render(pairs, spaced) for pairs, spaced in rows])


def test_rows_of_a_report_take_the_fast_path() -> None:
    lines = [json.dumps(row) for row in weekly_rows(range(1, 9))]
    fast = agree(lines)
    assert fast is not None and fast.rows == len(lines)
    assert fast.columns["cases"][0] == 5 and "deaths" in fast.names


def slow_values(body: bytes) -> dhis2_values.DataValues | str:
    try:
        return dhis2_values.from_json(strict_json.loads(body))
    except (strict_json.StrictJsonError, dhis2_values.DataValueSetError):
        return "refused"


def agree_dhis2(body: bytes, schemes: IdSchemes = UIDS) -> dhis2_values.DataValues | None:
    fast = dhis2_json.data_values(body, MAPPING, schemes)
    if fast is not None:
        slow = slow_values(body)
        assert slow != "refused", body
        assert isinstance(slow, dhis2_values.DataValues)
        for name in slow.__dataclass_fields__:
            ours, theirs = getattr(fast, name), getattr(slow, name)
            if isinstance(ours, list):
                ours, theirs = [(type(v), v) for v in ours], [(type(v), v) for v in theirs]
            assert ours == theirs, (name, body)
        assert isinstance(python_loads(body.decode()), dict)
    return fast


VALUE = '{"dataElement": "deCases0001", "orgUnit": "ouXAP1D1000", "value": "4"}'


@pytest.mark.parametrize(
    ("body", "taken"),
    [
        ('{"dataSet": "ds1", "period": "2026W5", "dataValues": [' + VALUE + "]}", True),
        ('{"dataValues": [' + VALUE + ", " + VALUE.replace("Cases0001", "Deaths001") + "]}", True),
        (
            '{"period": "2026W5", "orgUnit": "ouX", "attributeOptionCombo": "a", "dataValues": ['
            '{"dataElement": "deDeaths001", "period": null, "deleted": true, "followup": false,'
            ' "storedBy": "s", "created": "c", "lastUpdated": "l", "comment": "k"}]}',
            True,
        ),
        (  # colons inside strings: counted where keys can end instead
            '{"dataValues": [{"dataElement": "deTests0001", "categoryOptionCombo": "cFA00to04xx",'
            ' "attributeOptionCombo": "HllvX50cXC0", "created": "2026-02-01T10:00:00.000"}]}',
            True,
        ),
        ("{}", True),
        ('{"dataValues": []}', True),
        ('{"dataValues": [{"value": "1", "value": "2"}]}', False),  # a key given twice
        ('{"dataValues": [{"value": "1", "comment": "a", "comment": "b"}]}', False),
        ('{"dataValues": [{"created": "1:2", "created": "3:4"}]}', False),
        ('{"period": "2026W5", "period": "2026W6", "dataValues": []}', False),
        ('{"dataValues": [{"value": "1"}], "dataValues": []}', False),
        ('{"dataValues": [{"value": {"n": 1}}]}', False),  # nested
        ('{"dataValues": [{"unknownField": "1"}]}', False),
        ('{"dataValues": null}', False),
        ('{"dataValues": [1]}', False),
        ("[]", False),
        ('{"dataValues": [{"comment": "\\u00e9"}]}', False),
        ('{"dataValues": [{"value": ' + "1" * 20 + "}]}", False),
        ('{"dataValues": [{"value": 4}]}', False),  # a number: DHIS2 sends text
        ('{"dataValues": [{"comment": "a\\": b"}]}', False),
        ('{"dataValues": [{"value": NaN}]}', False),
        ('{"dataValues": [{"dataElement": "deUnknown01"}]}', False),  # not in the mapping
        ('{"dataValues": [{"orgUnit": "XA-P1-D1"}]}', False),  # a code, read by UID
        ('{"dataValues": [{"categoryOptionCombo": ""}]}', False),
    ],
)
def test_hostile_data_value_sets_are_read_alike_or_left_to_the_strict_path(
    body: str, taken: bool
) -> None:
    assert (agree_dhis2(body.encode()) is not None) == taken


value_keys = st.sampled_from([*dhis2_json.VALUE_FIELDS, "dataElement", "value", "unknown"])
#: Identifiers the mapping knows (by UID and by code), and text that could be one.
dhis2_ids = st.sampled_from(
    ["deCases0001", "EPI_CASES", "ouXAP1D1000", "XA-P1-D1", "cFA00to04xx", "HllvX50cXC0", "2026W5"]
)
dhis2_scalars = dhis2_ids | dhis2_ids | scalars
set_keys = st.sampled_from(["dataSet", "period", "orgUnit", "attributeOptionCombo", "period"])


@given(
    st.lists(st.tuples(set_keys, dhis2_scalars), max_size=3),
    st.lists(st.lists(st.tuples(value_keys, dhis2_scalars), max_size=5), max_size=4),
    st.booleans(),
    st.sampled_from([UIDS, CODES]),
)
def test_generated_data_value_sets_are_read_alike(
    head: list[tuple[str, Any]],
    values: list[list[tuple[str, Any]]],
    spaced: bool,
    schemes: IdSchemes,
) -> None:
    inner = ",".join(render(pairs, spaced) for pairs in values)
    colon = " : " if spaced else ":"
    body = render(head, spaced)[:-1] + ("," if head else "") + f'"dataValues"{colon}[{inner}]}}'
    agree_dhis2(body.encode(), schemes)


#: Values the fast path reads, field by field (a timestamp's colons included).
valid = {
    "dataElement": st.sampled_from(["deCases0001", "deTests0001"]),
    "period": st.sampled_from(["2026W5", "2026W6"]),
    "orgUnit": st.sampled_from(["ouXAP1D1000", "ouXAP1D2000"]),
    "categoryOptionCombo": st.sampled_from(["cFA00to04xx", "HllvX50cXC0"]),
    "value": st.sampled_from(["4", "12", ""]),
    "created": st.sampled_from(["2026-02-01T10:00:00.000", "a:b"]),
    "comment": st.sampled_from(['":', "x"]),
}
valid_pairs = st.sampled_from(sorted(valid)).flatmap(lambda k: st.tuples(st.just(k), valid[k]))


@given(st.lists(st.lists(valid_pairs, max_size=7), max_size=4), st.booleans())
def test_generated_sets_the_fast_path_reads_repeat_no_key_unseen(
    values: list[list[tuple[str, Any]]], spaced: bool
) -> None:
    body = '{"dataValues": [' + ",".join(render(pairs, spaced) for pairs in values) + "]}"
    fast = agree_dhis2(body.encode())
    repeated = any(len({k for k, _ in pairs}) < len(pairs) for pairs in values)
    assert fast is None or not repeated


def test_identifiers_are_read_by_the_scheme_asked_for() -> None:
    body = (
        b'{"dataValues": [{"dataElement": "EPI_CASES", "period": "2026W5", "orgUnit": "XA-P1-D1",'
        b' "categoryOptionCombo": "FEMALE_0-4", "attributeOptionCombo": "default", "value": "4"}]}'
    )
    by_code = agree_dhis2(body, CODES)
    assert by_code is not None and by_code.data_element == ["EPI_CASES"]
    assert agree_dhis2(body) is None  # codes are not UIDs: the slow path names the conflict


def test_the_client_sends_each_row_as_written_on_one_line() -> None:
    """A pretty-printed file's rows become one line each, byte for byte but for line breaks,
    so what the node decodes is what the file says (a repeated key included)."""
    rows = weekly_rows(range(1, 4))
    body = json.dumps({"generated_at": "2026-02-01T00:00:00Z", "rows": rows}, indent=2).encode()
    parsed = _json_rows(body)
    assert parsed is not None
    raw, extra = parsed
    assert extra == {"generated_at": "2026-02-01T00:00:00Z"}
    parts = list(_json_parts(raw, per_part=5, limit=1 << 20))
    assert [n for _data, n in parts] == [5, 5, 2]
    lines = b"".join(data for data, _n in parts).decode().splitlines()
    assert [python_loads(line) for line in lines] == rows


@pytest.mark.parametrize(
    ("breaks", "limit", "sizes"),
    [
        ((), 1 << 20, [5, 5, 2]),  # compact: each part joined at once
        ((7,), 1 << 20, [5, 5, 2]),  # a line break in row 8: from its part on, row by row
        ((), 400, None),  # parts past the byte limit: row by row, each under it
    ],
)
def test_json_parts_hold_every_row_once_on_a_line_of_its_own(
    breaks: tuple[int, ...], limit: int, sizes: list[int] | None
) -> None:
    rows = weekly_rows(range(1, 4))
    texts = [json.dumps(row, indent=1 if i in breaks else None) for i, row in enumerate(rows)]
    parsed = _json_rows(("[" + ",\r\n".join(texts) + "]").encode())
    assert parsed is not None
    parts = list(_json_parts(parsed[0], per_part=5, limit=limit))
    assert all(len(data) <= limit and 0 < n <= 5 for data, n in parts)
    if sizes is not None:
        assert [n for _data, n in parts] == sizes
    lines = b"".join(data for data, _n in parts).decode().split("\n")
    assert lines.pop() == ""
    assert [python_loads(line) for line in lines] == rows


def test_a_key_given_twice_in_a_large_file_is_refused_not_dropped(
    client: TestClient, agency_secret: str, node: Any, tmp_path: Path
) -> None:
    rows = [json.dumps(row, indent=1) for row in weekly_rows(range(1, 4))]
    rows[7] = rows[7].replace('"cases": 5', '"cases": 5, "cases": 900')
    path = tmp_path / "weekly.json"
    path.write_text("[" + ",\n".join(rows) + "]")
    with pytest.raises(PushError, match="line 8") as refused:
        push_file(client, token=agency_secret, schema_id="weekly_epi@1", path=path, chunk_rows=5)
    assert "cases" in str(refused.value)
    assert stored_counts(node) == (0, 0)


def test_json_lines_batches_cut_inside_parts_keep_the_files_line_numbers(
    client: TestClient, agency: dict[str, str], node: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parts cut mid-line, blank lines, batches of 3 rows cut inside a part, one line the
    fast path must leave to the strict one: errors name the file's lines, and the fixed file
    stores what the standard library reads from it."""
    monkeypatch.setattr(upload_commit, "BATCH_ROWS", 3)
    rows = weekly_rows(range(1, 4))  # 12 rows; lines 4 and 5 of the file are blank
    opened = client.post(
        "/v1/uploads",
        json={"schema_id": "weekly_epi@1", "media_type": "application/x-ndjson"},
        headers=agency,
    ).json()
    upload = f"/v1/uploads/{opened['upload_id']}"

    def commit(bad_deaths: bool, twice: bool) -> Any:
        lines = [json.dumps(row) for row in rows]
        if bad_deaths:  # file line 7: text is not a count
            lines[4] = lines[4].replace('"deaths": 0', '"deaths": "0"')
        if twice:  # file line 12: a key given twice
            lines[9] = lines[9].replace('"cases": 5', '"cases": 5, "cases": 6')
        data = ("\n".join(lines[:3]) + "\n\n  \n" + "\n".join(lines[3:]) + "\n").encode()
        cuts = [0, 17, 300, 301, len(data) - 5, len(data)]
        for number, (start, end) in enumerate(itertools.pairwise(cuts), 1):
            put = client.put(f"{upload}/parts/{number}", content=data[start:end], headers=agency)
            assert put.status_code == 200, put.text
        return client.post(f"{upload}/commit", headers=agency), data

    both, _data = commit(bad_deaths=True, twice=True)
    assert both.status_code == 422
    assert both.json()["detail"] == "line 12: the key 'cases' appears twice in one object"
    deaths, _data = commit(bad_deaths=True, twice=False)
    assert deaths.status_code == 422
    assert [(e["row"], e["field"]) for e in deaths.json()["errors"]] == [(7, "deaths")]
    assert stored_counts(node) == (0, 0)
    receipt, data = commit(bad_deaths=False, twice=False)
    assert receipt.status_code == 201, receipt.text
    assert receipt.json()["rows"] == 12
    table = cell_tables["weekly_epi@1"]
    with node.engine.connect() as conn:
        stored = conn.execute(select(*(table.c[f] for f in FIELDS))).all()
    expected = [python_loads(line) for line in data.decode().splitlines() if line.strip()]
    assert sorted(map(tuple, stored)) == sorted(tuple(r[f] for f in FIELDS) for r in expected)


@pytest.mark.parametrize(
    "body",
    [
        b'{"dataValues": [{"value": "\xff"}]}',  # not UTF-8
        b'{"dataValues": [{"value": "\xed\xa0\x80"}]}',  # a surrogate, encoded
        b'\xef\xbb\xbf{"dataValues": []}',  # a byte order mark
        b'{"dataValues": [{"value": "a\x01"}]}',  # a control character in a string
    ],
)
def test_bytes_the_strict_decoder_refuses_are_left_to_it(body: bytes) -> None:
    assert dhis2_json.data_values(body, MAPPING, UIDS) is None
    assert slow_values(body) == "refused"
