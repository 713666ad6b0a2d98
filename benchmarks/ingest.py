"""Ingest throughput: CSV and JSON pushes through a real server on loopback, beside two
baselines measured in the same run: a raw ``sqlite3.executemany`` of the same rows into the
same kind of table ("raw"), and a SQLAlchemy Core bulk insert of them ("core").

DHIS2 JSON is the same rows as a data value set (4 data values a row, category option combos
for age band x sex, the node's dhis2.yaml beside it) posted whole to ``/api/dataValueSets``;
its rows/s counts stored report rows, and data values/s is printed beside it.

    .venv/bin/python benchmarks/ingest.py            # 100,000 and 1,000,000 rows
    .venv/bin/python benchmarks/ingest.py --rows 100000

Prints rows/s for each and the ratio to the raw insert (each the best of three fresh runs),
and the server's highest peak memory (VmHWM) over its runs,
which should not grow with the file size: a file of more than ``CHUNK`` rows goes through an
upload session, whose commit holds one part and one batch of rows at a time.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exchange.clients.push import push_dhis2, push_file
from nodes import migrate, tokens
from nodes.database import make_engine
from nodes.directory import init_node, sample_gazetteer
from nodes.node import Node
from nodes.tables import cell_tables, reports
from nodes.tables import tokens as tokens_table
from tests.servers import kill_hard, start_server

HEADER = ["area", "week", "age_band", "sex", "cases", "deaths", "admissions", "tests"]
AGE_BANDS = ["0-4", "5-14", "15-24", "25-44", "45-64", "65+", "unknown"]
SEXES = ["female", "male", "other", "unknown"]
CHUNK = 50_000
#: Each figure is the best of this many fresh runs, ours and the baseline alike: one run's
#: fsyncs vary by a third on this disk.
RUNS = 3


def gazetteer_districts() -> list[str]:
    return [
        a.code for a in sample_gazetteer("XA", provinces=25, districts=10).areas if a.level == 2
    ]


def rows(n: int) -> Iterator[tuple[str, str, str, str, int, int, int, int]]:
    """Distinct cells: district x week (2024-2026) x age band x sex, with plausible counts."""
    count = 0
    for year in (2024, 2025, 2026):
        for week in range(1, 53):
            for district in gazetteer_districts():
                for band in AGE_BANDS:
                    for sex in SEXES:
                        cases = (week * 7 + len(district) * 3 + count) % 97
                        yield (
                            district,
                            f"{year}-W{week:02d}",
                            band,
                            sex,
                            cases,
                            cases // 20,
                            cases // 8,
                            cases * 3,
                        )
                        count += 1
                        if count == n:
                            return


def write_files(n: int, directory: Path) -> tuple[Path, Path]:
    csv_path, json_path = directory / f"weekly-{n}.csv", directory / f"weekly-{n}.json"
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows(rows(n))
    with json_path.open("w") as handle:
        json.dump({"rows": [dict(zip(HEADER, r, strict=True)) for r in rows(n)]}, handle)
    return csv_path, json_path


MEASURES = ("cases", "deaths", "admissions", "tests")
#: A data value set is one request (DHIS2's aggregate data exchange sends one per request);
#: 100,000 rows are 400,000 values and about 50 MB, more than any real exchange sends.
DHIS2_MAX_ROWS = 200_000
DATA_ELEMENTS = ("deCases0001", "deDeaths001", "deAdmits001", "deTests0001")


def _ou(district: str) -> str:
    _xa, p, d = district.split("-")
    return f"ou{int(p[1:]):03d}{int(d[1:]):03d}xxx"


def _coc(band: str, sex: str) -> str:
    return f"c{AGE_BANDS.index(band)}{SEXES.index(sex)}cocxxxxx"


def write_dhis2(n: int, directory: Path) -> Path:
    """The same rows as one DHIS2 data value set, and the bench node's mapping for it."""
    path = directory / f"weekly-{n}.dhis2.json"
    values = [
        {
            "dataElement": element,
            "period": f"{week[:4]}W{int(week[6:])}",
            "orgUnit": _ou(district),
            "categoryOptionCombo": _coc(band, sex),
            "value": str(value),
        }
        for district, week, band, sex, *counts in rows(n)
        for element, value in zip(DATA_ELEMENTS, counts, strict=True)
    ]
    path.write_text(json.dumps({"dataSet": "dsWeeklyEpi", "dataValues": values}))
    return path


def dhis2_mapping() -> str:
    lines = ["data_elements:"]
    lines += [
        f"  - {{uid: {e}, schema: weekly_epi@1, measure: {m}}}"
        for e, m in zip(DATA_ELEMENTS, MEASURES, strict=True)
    ]
    lines.append("category_option_combos:")
    lines += [
        f"  - {{uid: {_coc(b, s)}, dimensions: {{age_band: '{b}', sex: {s}}}}}"
        for b in AGE_BANDS
        for s in SEXES
    ]
    lines.append("org_units:")
    lines += [f"  - {{uid: {_ou(d)}, area: {d}}}" for d in gazetteer_districts()]
    lines += ["data_sets:", "  - {uid: dsWeeklyEpi, schema: weekly_epi@1}", ""]
    return "\n".join(lines)


def raw_sqlite_rate(n: int, directory: Path, attempt: int = 0) -> float:
    """The baseline: the same rows, already parsed, into an identical table, committed per chunk."""
    path = directory / f"raw-{attempt}.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    engine.dispose()
    table = cell_tables["weekly_epi@1"].name
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=FULL"):
        conn.execute(f"PRAGMA {pragma}")
    conn.execute(
        "INSERT INTO tokens (id, name, role, schemas, secret_sha256, created_at) VALUES (1,'b','agency','[]','x','2026-01-01')"
    )
    columns = ", ".join(["report_id", *HEADER])
    sql = f"INSERT INTO {table} ({columns}) VALUES ({', '.join('?' * (len(HEADER) + 1))})"
    source = rows(n)
    started = time.perf_counter()
    report = 0
    while chunk := list(islice(source, CHUNK)):
        report += 1
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO reports (id, schema_id, token_id, received_at, content_sha256, row_count, superseded_rows) "
            "VALUES (?, 'weekly_epi@1', 1, '2026-01-01', 'x', ?, 0)",
            (report, len(chunk)),
        )
        conn.executemany(sql, [(report, *r) for r in chunk])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return n / elapsed


def sqlalchemy_rate(n: int, directory: Path, attempt: int = 0) -> float:
    """The brief's example baseline: a SQLAlchemy Core bulk insert (``executemany`` of dicts)
    of the same rows, already parsed, into an identical table, on the node's own engine
    settings, committed per chunk."""
    path = directory / f"core-{attempt}.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    table = cell_tables["weekly_epi@1"]
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with engine.begin() as conn:
        conn.execute(
            tokens_table.insert().values(
                id=1, name="b", role="agency", schemas="[]", secret_sha256="x", created_at=now
            )
        )
    names = ["report_id", *HEADER]
    source = rows(n)
    started = time.perf_counter()
    report = 0
    while chunk := list(islice(source, CHUNK)):
        report += 1
        with engine.begin() as conn:
            conn.execute(
                reports.insert().values(
                    id=report,
                    schema_id="weekly_epi@1",
                    token_id=1,
                    received_at=now,
                    content_sha256="x",
                    row_count=len(chunk),
                    superseded_rows=0,
                )
            )
            conn.execute(
                table.insert(), [dict(zip(names, (report, *r), strict=True)) for r in chunk]
            )
    elapsed = time.perf_counter() - started
    engine.dispose()
    return n / elapsed


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def push_rate(path: Path, schema_root: Path, label: str, attempt: int = 0) -> tuple[float, float]:
    node_dir = schema_root / f"{label}-{attempt}"
    settings, _key = init_node(
        node_dir, node_id="XA", name="Bench", gazetteer=sample_gazetteer("XA", 25, 10)
    )
    if label == "dhis2":  # one request holds the whole set: 400,000 values are about 50 MB
        with (node_dir / "node.toml").open("a") as handle:
            handle.write("max_body_bytes = 268435456\n")
        (node_dir / "dhis2.yaml").write_text(dhis2_mapping())
    node = Node.open(settings)
    _record, secret = tokens.issue_token(
        node.engine,
        name="bench",
        role="agency",
        schemas=("weekly_epi@1",),
        now=dt.datetime.now(dt.UTC),
    )
    node.close()
    server, port = start_server(node_dir)
    try:
        with httpx2.Client(base_url=f"http://127.0.0.1:{port}", timeout=300) as client:
            started = time.perf_counter()
            if label == "dhis2":
                outcome = push_dhis2(client, token=secret, path=path)
                elapsed = time.perf_counter() - started
                if not outcome.imported:
                    raise SystemExit(f"the DHIS2 import failed: {outcome.summary}")
                stored = outcome.summary["importCount"]["imported"] // len(MEASURES)
            else:
                result = push_file(
                    client, token=secret, schema_id="weekly_epi@1", path=path, chunk_rows=CHUNK
                )
                elapsed = time.perf_counter() - started
                stored = result.rows
        memory = peak_rss_mib(server.pid)
    finally:
        kill_hard(server)
    return stored / elapsed, memory


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rows", type=int, action="append", help="row counts (default 100000 and 1000000)"
    )
    args = parser.parse_args()
    sizes = args.rows or [100_000, 1_000_000]
    print(
        f"{'rows':>9} {'format':>6} {'ours rows/s':>12} {'raw rows/s':>11} {'ratio':>6}"
        f" {'core rows/s':>12} {'ratio':>6} {'server peak MiB':>16} {'data values/s':>14}"
    )
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            csv_path, json_path = write_files(n, root)
            raw = max(raw_sqlite_rate(n, root, attempt) for attempt in range(RUNS))
            core = max(sqlalchemy_rate(n, root, attempt) for attempt in range(RUNS))
            runs = [("csv", csv_path), ("json", json_path)]
            if n <= DHIS2_MAX_ROWS:
                runs.append(("dhis2", write_dhis2(n, root)))
            else:
                print(
                    f"{n:>9}  dhis2 skipped: one set of {n * len(MEASURES):,} values is one request"
                )
            for label, path in runs:
                runs_of = [push_rate(path, root, label, attempt) for attempt in range(RUNS)]
                rate, memory = max(r for r, _m in runs_of), max(m for _r, m in runs_of)
                values = f" {rate * len(MEASURES):>14,.0f}" if label == "dhis2" else ""
                print(
                    f"{n:>9} {label:>6} {rate:>12,.0f} {raw:>11,.0f} {rate / raw:>6.2f}"
                    f" {core:>12,.0f} {rate / core:>6.2f} {memory:>16.1f}{values}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
