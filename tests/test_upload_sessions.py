"""Upload sessions end to end, on SQLite and PostgreSQL: parts in any order, retries, one
atomic commit that stores the whole file or nothing and lists every error by file row."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import itertools
import json
import tracemalloc
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from exchange.api import upload_commit
from exchange.clients.push import PushError, _csv_parts, push_file
from nodes import reports as reports_module
from nodes import tokens, upload_sessions
from nodes.node import Node
from nodes.tables import reports, upload_parts
from nodes.tables import upload_sessions as upload_sessions_table
from schemas.errors import NotFoundError
from schemas.validation import ReportValidationError
from tests.samples import as_csv, weekly_rows
from tests.test_push_api import stored_counts

UPLOADS = "/v1/uploads"
CSV = {"schema_id": "weekly_epi@1", "media_type": "text/csv"}


def open_csv(node: Node, record: tokens.TokenRecord, at: dt.datetime) -> upload_sessions.Session:
    """A CSV upload of weekly_epi@1 opened directly on the node, without a key."""
    session, _reused = upload_sessions.open_session(
        node.engine,
        token=record,
        schema_id="weekly_epi@1",
        media_type="text/csv",
        generated_at=None,
        key=None,
        now=at,
    )
    return session


def open_upload(client: TestClient, agency: dict[str, str], **extra: str) -> str:
    response = client.post(UPLOADS, json={**CSV, **extra}, headers=agency)
    assert response.status_code == 201, response.text
    upload_id: str = response.json()["upload_id"]
    return upload_id


def put(client: TestClient, agency: dict[str, str], upload_id: str, n: int, data: bytes) -> None:
    response = client.put(f"{UPLOADS}/{upload_id}/parts/{n}", content=data, headers=agency)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "number": n,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def cut(data: bytes, pieces: int) -> list[bytes]:
    """``data`` in ``pieces`` byte ranges of about equal size: boundaries fall inside rows."""
    step = -(-len(data) // pieces)
    return [data[i : i + step] for i in range(0, len(data), step)]


def test_parts_sent_out_of_order_make_one_report_of_the_whole_file(
    client: TestClient, agency: dict[str, str], node: Node
) -> None:
    rows = weekly_rows(range(1, 11))
    data = as_csv(rows).encode()
    upload_id = open_upload(client, agency)
    parts = cut(data, 3)
    for n in (3, 1, 2):
        put(client, agency, upload_id, n, parts[n - 1])
    status = client.get(f"{UPLOADS}/{upload_id}", headers=agency).json()
    assert [p["number"] for p in status["parts"]] == [1, 2, 3]
    assert status["bytes"] == len(data)
    assert status["state"] == "open"

    commit = client.post(
        f"{UPLOADS}/{upload_id}/commit",
        json={"parts": 3, "sha256": hashlib.sha256(data).hexdigest()},
        headers=agency,
    )
    assert commit.status_code == 201, commit.text
    receipt = commit.json()
    assert receipt["rows"] == len(rows)
    assert receipt["content_sha256"] == hashlib.sha256(data).hexdigest()
    assert stored_counts(node) == (1, len(rows))
    stored = client.get(
        f"/v1/reports/{receipt['report_id']}", params={"limit": 1000}, headers=agency
    ).json()["stored_rows"]
    as_sent = [{k: str(v) for k, v in r.items()} for r in rows]
    assert [{k: str(r[k]) for k in as_sent[0]} for r in stored] == as_sent
    with node.engine.connect() as conn:  # the parts went with the commit
        assert conn.execute(select(func.count()).select_from(upload_parts)).scalar_one() == 0
    assert client.get(f"{UPLOADS}/{upload_id}", headers=agency).json()["state"] == "committed"


def test_a_part_sent_again_replaces_the_earlier_one(
    client: TestClient, agency: dict[str, str], node: Node
) -> None:
    good = as_csv(weekly_rows(range(1, 3))).encode()
    first, second = cut(good, 2)
    upload_id = open_upload(client, agency)
    put(client, agency, upload_id, 1, first)
    put(client, agency, upload_id, 2, second.replace(b"female", b"femme"))  # a bad send
    put(client, agency, upload_id, 2, second)  # the retry
    put(client, agency, upload_id, 2, second)  # and a duplicate of it
    commit = client.post(f"{UPLOADS}/{upload_id}/commit", headers=agency)
    assert commit.status_code == 201, commit.text
    assert stored_counts(node) == (1, 8)


def test_the_chunked_case_of_the_issue_stores_nothing_and_names_file_row_5(
    client: TestClient, agency: dict[str, str], node: Node
) -> None:
    """A 4-row file in parts of 2 rows with a bad row 4: rows 1-2 used to be stored."""
    rows = weekly_rows(range(1, 2))
    rows[3]["cases"] = "many"
    lines = as_csv(rows).encode().splitlines(keepends=True)
    upload_id = open_upload(client, agency)
    put(client, agency, upload_id, 1, b"".join(lines[:3]))  # header and rows 1-2
    put(client, agency, upload_id, 2, b"".join(lines[3:]))  # rows 3-4
    commit = client.post(f"{UPLOADS}/{upload_id}/commit", headers=agency)
    assert commit.status_code == 422, commit.text
    problem = commit.json()
    assert [(e["row"], e["field"], e["code"]) for e in problem["errors"]] == [
        (5, "cases", "not_an_integer")  # the header is line 1: the fourth row is line 5
    ]
    assert stored_counts(node) == (0, 0)
    # The session stays open: the agency fixes the part and commits again.
    put(client, agency, upload_id, 2, b"".join(lines[3:]).replace(b"many", b"7"))
    assert client.post(f"{UPLOADS}/{upload_id}/commit", headers=agency).status_code == 201
    assert stored_counts(node) == (1, 4)


def test_every_error_of_every_part_is_listed_in_file_order(
    client: TestClient, agency: dict[str, str], node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(upload_commit, "BATCH_ROWS", 3)  # validated in batches of three rows
    rows = weekly_rows(range(1, 4))  # 12 rows
    rows[1]["sex"] = "f"
    rows[7]["cases"] = -1
    rows[10]["area"] = "XA-P9-D9"
    text = as_csv(rows) + "XA-P1-D1,2026-W01,25-44\n"  # a ragged 13th row
    upload_id = open_upload(client, agency)
    for n, part in enumerate(cut(text.encode(), 4), 1):
        put(client, agency, upload_id, n, part)
    problem = client.post(f"{UPLOADS}/{upload_id}/commit", headers=agency).json()
    assert problem["total_errors"] == 4
    assert [(e["row"], e["field"], e["code"]) for e in problem["errors"]] == [
        (3, "sex", "not_in_codelist"),
        (9, "cases", "negative_count"),
        (12, "area", "unknown_area"),
        (14, "*", "ragged_row"),
    ]
    assert stored_counts(node) == (0, 0)


def test_a_cell_stated_in_two_parts_is_a_duplicate_across_batches(
    client: TestClient, agency: dict[str, str], node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(upload_commit, "BATCH_ROWS", 2)
    rows = weekly_rows(range(1, 2))
    text = as_csv([*rows, rows[0]])  # row 1 again as row 5 (file line 6)
    upload_id = open_upload(client, agency)
    put(client, agency, upload_id, 1, text.encode())
    problem = client.post(f"{UPLOADS}/{upload_id}/commit", headers=agency).json()
    assert [(e["row"], e["code"]) for e in problem["errors"]] == [(6, "duplicate_cell")]
    assert "row 2" in problem["errors"][0]["detail"]  # where the cell was stated first
    assert stored_counts(node) == (0, 0)


def test_cells_that_only_share_a_hash_are_not_duplicates(
    client: TestClient, agency: dict[str, str], node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every key hashed alike: the unique index fails, the keys themselves decide."""
    monkeypatch.setattr(upload_commit, "BATCH_ROWS", 2)
    monkeypatch.setattr(upload_commit, "hash", lambda _key: 7, raising=False)
    rows = weekly_rows(range(1, 3))
    upload_id = open_upload(client, agency)
    put(client, agency, upload_id, 1, as_csv([*rows, rows[5]]).encode())
    problem = client.post(f"{UPLOADS}/{upload_id}/commit", headers=agency).json()
    assert [(e["row"], e["code"]) for e in problem["errors"]] == [(10, "duplicate_cell")]
    assert "row 7" in problem["errors"][0]["detail"]
    again = open_upload(client, agency)
    put(client, agency, again, 1, as_csv(rows).encode())
    receipt = client.post(f"{UPLOADS}/{again}/commit", headers=agency)
    assert receipt.status_code == 201, receipt.text
    assert stored_counts(node)[1] == len(rows)


def test_a_province_and_its_district_in_different_batches_are_refused(
    client: TestClient, agency: dict[str, str], node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(upload_commit, "BATCH_ROWS", 2)
    rows = weekly_rows(range(1, 2))
    province = {**rows[0], "area": "XA-P1"}  # contains XA-P1-D1 of row 1
    upload_id = open_upload(client, agency)
    put(client, agency, upload_id, 1, as_csv([*rows, province]).encode())
    problem = client.post(f"{UPLOADS}/{upload_id}/commit", headers=agency).json()
    errors = [(e["row"], e["field"], e["code"]) for e in problem["errors"]]
    assert errors == [(2, "area", "nested_area")]
    assert "XA-P1" in problem["errors"][0]["detail"]
    assert "row 6" in problem["errors"][0]["detail"]
    assert stored_counts(node) == (0, 0)


def test_json_lines_upload_names_rows_by_line(
    client: TestClient, agency: dict[str, str], node: Node
) -> None:
    rows = weekly_rows(range(1, 3))
    rows[5]["deaths"] = "0"  # JSON types are kept: text is not a count
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    response = client.post(
        UPLOADS,
        json={
            "schema_id": "weekly_epi@1",
            "media_type": "application/x-ndjson",
            "generated_at": "2026-01-20T08:00:00+02:00",
        },
        headers=agency,
    )
    upload_id = response.json()["upload_id"]
    put(client, agency, upload_id, 1, data)
    problem = client.post(f"{UPLOADS}/{upload_id}/commit", headers=agency).json()
    assert [(e["row"], e["field"]) for e in problem["errors"]] == [(6, "deaths")]
    fixed = data.replace(b'"deaths": "0"', b'"deaths": 0')
    put(client, agency, upload_id, 1, fixed)
    receipt = client.post(f"{UPLOADS}/{upload_id}/commit", headers=agency).json()
    assert receipt["rows"] == 8
    with node.engine.connect() as conn:
        generated = conn.execute(select(reports.c.generated_at)).scalar_one()
    assert generated == dt.datetime(2026, 1, 20, 6, tzinfo=dt.UTC)


def test_a_commit_checks_the_parts_and_digest_the_client_states(
    client: TestClient, agency: dict[str, str], node: Node
) -> None:
    data = as_csv(weekly_rows()).encode()
    a, b, c = cut(data, 3)
    upload_id = open_upload(client, agency)
    put(client, agency, upload_id, 1, a)
    put(client, agency, upload_id, 3, c)
    gap = client.post(f"{UPLOADS}/{upload_id}/commit", headers=agency)
    assert gap.status_code == 422
    assert "part(s) 2 missing" in gap.json()["detail"]
    put(client, agency, upload_id, 2, b)
    short = client.post(f"{UPLOADS}/{upload_id}/commit", json={"parts": 4}, headers=agency)
    assert "part(s) 4 missing" in short.json()["detail"]
    wrong = client.post(f"{UPLOADS}/{upload_id}/commit", json={"sha256": "0" * 64}, headers=agency)
    assert wrong.status_code == 422
    assert hashlib.sha256(data).hexdigest() in wrong.json()["detail"]
    assert stored_counts(node) == (0, 0)


def test_a_second_commit_answers_with_the_same_report_and_parts_are_closed(
    client: TestClient, agency: dict[str, str], node: Node
) -> None:
    upload_id = open_upload(client, agency)
    put(client, agency, upload_id, 1, as_csv(weekly_rows()).encode())
    first = client.post(f"{UPLOADS}/{upload_id}/commit", headers=agency)
    again = client.post(f"{UPLOADS}/{upload_id}/commit", headers=agency)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["report_id"] == first.json()["report_id"]
    late = client.put(f"{UPLOADS}/{upload_id}/parts/2", content=b"x", headers=agency)
    assert late.status_code == 409
    assert "committed as report" in late.json()["detail"]
    assert client.delete(f"{UPLOADS}/{upload_id}", headers=agency).status_code == 409
    assert stored_counts(node) == (1, 8)


def test_a_dry_run_commit_stores_nothing_and_keeps_the_upload_open(
    client: TestClient, agency: dict[str, str], node: Node
) -> None:
    upload_id = open_upload(client, agency)
    put(client, agency, upload_id, 1, as_csv(weekly_rows()).encode())
    preview = client.post(f"{UPLOADS}/{upload_id}/commit?dry_run=true", headers=agency)
    assert preview.status_code == 200
    assert preview.json()["dry_run"] is True
    assert stored_counts(node) == (0, 0)
    assert client.get(f"{UPLOADS}/{upload_id}", headers=agency).json()["state"] == "open"


def test_the_same_key_resumes_the_upload_with_the_parts_it_holds(
    client: TestClient, agency: dict[str, str]
) -> None:
    key = {**agency, "Idempotency-Key": "file-1234"}
    first = client.post(UPLOADS, json=CSV, headers=key)
    put(client, agency, first.json()["upload_id"], 1, b"area,week\n")
    again = client.post(UPLOADS, json=CSV, headers=key)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["upload_id"] == first.json()["upload_id"]
    assert [p["number"] for p in again.json()["parts"]] == [1]
    other = client.post(UPLOADS, json={**CSV, "media_type": "application/x-ndjson"}, headers=key)
    assert other.status_code == 422
    assert "use a new key" in other.json()["detail"]


def test_uploads_belong_to_the_token_that_opened_them(
    client: TestClient, agency: dict[str, str], node: Node
) -> None:
    upload_id = open_upload(client, agency)
    _record, secret = tokens.issue_token(
        node.engine, name="other", role="agency", schemas=("weekly_epi@1",), now=now()
    )
    other = {"Authorization": f"Bearer {secret}"}
    assert client.get(f"{UPLOADS}/{upload_id}", headers=other).status_code == 404
    assert (
        client.put(f"{UPLOADS}/{upload_id}/parts/1", content=b"a", headers=other).status_code == 404
    )
    assert client.post(f"{UPLOADS}/{upload_id}/commit", headers=other).status_code == 404
    limited = tokens.issue_token(
        node.engine, name="limited", role="agency", schemas=("line_list@1",), now=now()
    )[1]
    refused = client.post(UPLOADS, json=CSV, headers={"Authorization": f"Bearer {limited}"})
    assert refused.status_code == 403
    assert client.post(UPLOADS, json=CSV).status_code == 401


def test_bounds_on_parts_and_uploads(client: TestClient, agency: dict[str, str]) -> None:
    upload_id = open_upload(client, agency)
    limit = client.get(f"{UPLOADS}/{upload_id}", headers=agency).json()["max_part_bytes"]
    too_big = client.put(
        f"{UPLOADS}/{upload_id}/parts/1", content=b"x" * (limit + 1), headers=agency
    )
    assert too_big.status_code == 413
    assert (
        client.put(f"{UPLOADS}/{upload_id}/parts/0", content=b"x", headers=agency).status_code
        == 422
    )
    assert (
        client.put(f"{UPLOADS}/{upload_id}/parts/1", content=b"", headers=agency).status_code == 422
    )
    json_doc = client.post(
        UPLOADS,
        json={"schema_id": "weekly_epi@1", "media_type": "application/json"},
        headers=agency,
    )
    assert json_doc.status_code == 422


def test_an_upload_expires_a_day_after_its_last_part(node: Node) -> None:
    record = tokens.issue_token(
        node.engine, name="agency", role="agency", schemas=("weekly_epi@1",), now=now()
    )[0]
    start = now() - dt.timedelta(hours=30)
    session = open_csv(node, record, start)
    upload_sessions.put_part(
        node.engine,
        token=record,
        public_id=session.public_id,
        number=1,
        data=b"abc",
        max_bytes=10**6,
        now=start + dt.timedelta(hours=5),  # extends the session to 29 hours after start
    )
    assert upload_sessions.pending(node.engine, start + dt.timedelta(hours=28)) == (1, 3)
    assert upload_sessions.pending(node.engine, now()) == (0, 0)
    with pytest.raises(NotFoundError, match="expired"):
        upload_sessions.get(node.engine, token=record, public_id=session.public_id, now=now())
    open_csv(node, record, now())  # opening any session clears expired ones and their parts
    with node.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(upload_parts)).scalar_one() == 0


class Interrupted(Exception):
    pass


def test_an_interrupted_push_resumes_without_sending_held_parts_again(
    client: TestClient, agency_secret: str, node: Node, tmp_path: Path
) -> None:
    path = tmp_path / "weekly.csv"
    path.write_text(as_csv(weekly_rows(range(1, 11))))  # 40 rows: 4 parts of 10
    sent: list[int] = []

    def cut_after_two_parts(rows: int) -> None:
        sent.append(rows)
        if len(sent) == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        push_file(
            client,
            token=agency_secret,
            schema_id="weekly_epi@1",
            path=path,
            chunk_rows=10,
            on_chunk=cut_after_two_parts,
        )
    assert stored_counts(node) == (0, 0)
    resumed = push_file(
        client, token=agency_secret, schema_id="weekly_epi@1", path=path, chunk_rows=10
    )
    assert (resumed.parts, resumed.parts_already_held, resumed.rows) == (4, 2, 40)
    assert stored_counts(node) == (1, 40)
    again = push_file(
        client, token=agency_secret, schema_id="weekly_epi@1", path=path, chunk_rows=10
    )
    assert again.replayed
    assert again.receipt["report_id"] == resumed.receipt["report_id"]
    assert stored_counts(node) == (1, 40)


def test_a_large_json_file_goes_as_json_lines_and_a_bad_row_stores_nothing(
    client: TestClient, agency_secret: str, node: Node, tmp_path: Path
) -> None:
    rows = weekly_rows(range(1, 6))
    rows[17]["admissions"] = True  # not a count
    path = tmp_path / "weekly.json"
    path.write_text(json.dumps({"generated_at": "2026-02-01T00:00:00Z", "rows": rows}))
    with pytest.raises(PushError, match=r"row 18, admissions=") as refused:
        push_file(client, token=agency_secret, schema_id="weekly_epi@1", path=path, chunk_rows=6)
    assert "1 value" in str(refused.value) or "422" in str(refused.value)
    assert stored_counts(node) == (0, 0)
    rows[17]["admissions"] = 2
    path.write_text(json.dumps({"generated_at": "2026-02-01T00:00:00Z", "rows": rows}))
    done = push_file(client, token=agency_secret, schema_id="weekly_epi@1", path=path, chunk_rows=6)
    assert (done.parts, done.rows) == (4, 20)
    with node.engine.connect() as conn:
        generated = conn.execute(select(reports.c.generated_at)).scalar_one()
    assert generated == dt.datetime(2026, 2, 1, tzinfo=dt.UTC)


def test_a_small_file_is_one_push(
    client: TestClient, agency_secret: str, node: Node, tmp_path: Path
) -> None:
    path = tmp_path / "weekly.csv"
    path.write_text(as_csv(weekly_rows()))
    done = push_file(client, token=agency_secret, schema_id="weekly_epi@1", path=path)
    assert (done.parts, done.rows) == (1, 8)
    with node.engine.connect() as conn:
        sessions = conn.execute(
            select(func.count()).select_from(upload_sessions_table)
        ).scalar_one()
    assert sessions == 0


@pytest.mark.parametrize(("rows", "limit"), [(7, 10**6), (1000, 50), (3, 13), (1, 1)])
def test_the_client_cuts_a_file_into_parts_that_join_back_to_it(
    tmp_path: Path, rows: int, limit: int
) -> None:
    path = tmp_path / "report.csv"
    data = b"area,note\n" + b"".join(b'%d,"a\nb"\n' % i for i in range(300))
    path.write_bytes(data)
    parts = list(_csv_parts(path, rows, limit))
    assert b"".join(p for p, _ in parts) == data
    assert max(len(p) for p, _ in parts) <= limit
    if limit == 10**6:  # cut by rows only: every part but the last holds ``rows`` lines
        assert {n for _, n in parts[:-1]} == {rows}


def big_csv(rows: int) -> bytes:
    """``rows`` distinct valid cells of weekly_epi@1 (12 districts x 4 sexes x 7 bands x weeks)."""
    districts = [f"XA-P{p}-D{d}" for p in range(1, 5) for d in range(1, 4)]
    sexes = ("female", "male", "other", "unknown")
    bands = ("0-4", "5-14", "15-24", "25-44", "45-64", "65+", "unknown")
    weeks = [f"{y}-W{w:02d}" for y in range(2020, 2027) for w in range(1, 53)]
    lines = ["area,week,age_band,sex,cases,deaths,admissions,tests"]
    cells = itertools.product(weeks, districts, sexes, bands)
    lines += [f"{a},{w},{b},{s},3,0,1,9" for w, a, s, b in itertools.islice(cells, rows)]
    return ("\n".join(lines) + "\n").encode()


def commit_peak(node: Node, record: tokens.TokenRecord, data: bytes, part_bytes: int) -> int:
    """Peak Python memory of committing ``data`` sent in parts of ``part_bytes``."""
    session = open_csv(node, record, now())
    for n, start in enumerate(range(0, len(data), part_bytes), 1):
        upload_sessions.put_part(
            node.engine,
            token=record,
            public_id=session.public_id,
            number=n,
            data=data[start : start + part_bytes],
            max_bytes=10**9,
            now=now(),
        )
    tracemalloc.start()
    try:
        stored = upload_commit.commit(
            node,
            token=record,
            public_id=session.public_id,
            parts=None,
            sha256=hashlib.sha256(data).hexdigest(),
            dry_run=False,
            now=now(),
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert stored.rows == data.count(b"\n") - 1
    return peak


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # memory is not storage's
def test_commit_memory_does_not_grow_with_the_file(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file four times larger, in parts of the same size, peaks at about the same memory.

    Holding the raw file alone (let alone its rows) would add 2 MiB to the larger peak.
    """
    monkeypatch.setattr(upload_commit, "BATCH_ROWS", 2_000)
    record = tokens.issue_token(
        node.engine, name="agency", role="agency", schemas=("weekly_epi@1",), now=now()
    )[0]
    small, large = big_csv(15_000), big_csv(60_000)
    assert len(large) > 3.9 * len(small)
    part = 64 * 1024
    peak_small = commit_peak(node, record, small, part)
    peak_large = commit_peak(node, record, large, part)
    assert peak_large < 1.3 * peak_small, (peak_small, peak_large)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def csv_row_starts(text: str) -> list[int]:
    """The line each data row starts on, by the standard library reading the whole file."""
    reader = csv.reader(io.StringIO(text, newline=""))
    starts, start = [], 1
    for row in reader:
        if row:
            starts.append(start)
        start = reader.line_num + 1
    return starts[1:]  # the header is not a data row


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # parsing, not storage
@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_parts_cut_anywhere_read_as_the_csv_module_reads_the_whole_file(
    node: Node, monkeypatch: pytest.MonkeyPatch, data: st.DataObject
) -> None:
    """Any quoting, line ends, blank lines, batch size and cuts: the same rows, and a bad
    row named by the line the csv module says it starts on."""
    monkeypatch.setattr(upload_commit, "BATCH_ROWS", data.draw(st.integers(1, 5)))
    rows = weekly_rows(range(1, 4))[: data.draw(st.integers(1, 12))]
    bad = data.draw(st.none() | st.integers(0, len(rows) - 1))
    if bad is not None:  # a quoted value across two lines, or a plain negative count
        wrong = data.draw(st.sampled_from([{"age_band": "25-\n44"}, {"cases": -3}]))
        rows[bad] = {**rows[bad], **wrong}
    out = io.StringIO(newline="")
    writer = csv.DictWriter(
        out,
        fieldnames=list(rows[0]),
        quoting=data.draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL])),
        lineterminator=data.draw(st.sampled_from(["\n", "\r\n"])),
    )
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
        if data.draw(st.booleans()):
            out.write("\n")  # a blank line: carries nothing, but counts
    text = out.getvalue()
    raw = text.encode()
    cuts = sorted(data.draw(st.sets(st.integers(1, len(raw) - 1), max_size=6)))
    parts = [raw[a:b] for a, b in itertools.pairwise([0, *cuts, len(raw)])]
    record = tokens.issue_token(
        node.engine,
        name=f"agency-{uuid.uuid4().hex[:8]}",
        role="agency",
        schemas=("weekly_epi@1",),
        now=now(),
    )[0]
    session = open_csv(node, record, now())
    for number in data.draw(st.permutations(range(1, len(parts) + 1))):
        upload_sessions.put_part(
            node.engine,
            token=record,
            public_id=session.public_id,
            number=number,
            data=parts[number - 1],
            max_bytes=10**6,
            now=now(),
        )

    def commit() -> reports_module.StoredReport:
        return upload_commit.commit(
            node,
            token=record,
            public_id=session.public_id,
            parts=len(parts),
            sha256=hashlib.sha256(raw).hexdigest(),
            dry_run=False,
            now=now(),
        )

    if bad is None:
        stored = commit()
        assert stored.rows == len(rows)
        back = reports_module.rows_of(node.engine, token=record, report_id=stored.id, limit=100)
        assert [(r["area"], r["week"], r["sex"]) for r in back] == [
            (r["area"], r["week"], r["sex"]) for r in rows
        ]
    else:
        with pytest.raises(ReportValidationError) as refused:
            commit()
        assert [e.row for e in refused.value.errors] == [csv_row_starts(text)[bad]]
