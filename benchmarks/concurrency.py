"""Pushes under concurrency: 8 clients pushing 100-row reports to 1, 2 and 4 server workers,
on SQLite and PostgreSQL, side by side in one run.

    .venv/bin/python benchmarks/concurrency.py               # 4 s per cell of the table
    .venv/bin/python benchmarks/concurrency.py --seconds 8

Prints reports/s, p50 and p99 latency for each backend and worker count, and the ratio of
PostgreSQL to SQLite at the same worker count. PostgreSQL runs in a fresh schema of the
database at EXCHANGE_TEST_POSTGRES_URL (or ``--postgres URL``), dropped afterwards; without
one it is skipped with a message. Half the reports are corrections of cells other clients
pushed, so the supersede step and its lock are on the measured path.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nodes import tokens
from nodes.database import make_engine
from nodes.directory import init_node, sample_gazetteer
from nodes.node import Node
from nodes.settings import NodeSettings
from tests.servers import kill_hard, start_server

CLIENTS = 8
ROWS = 100
WORKERS = (1, 2, 4)
TIMEOUT = 10.0  # seconds; a push that takes longer counts as failed
WARM_UP = 1.0  # seconds of pushes not counted: workers start, caches fill
AGE_BANDS = ["0-4", "5-14", "15-24", "25-44", "45-64"]
SEXES = ["female", "male"]


def districts() -> list[str]:
    return [a.code for a in sample_gazetteer("XA", 25, 10).areas if a.level == 2]


def report(client: int, number: int, areas: list[str]) -> list[dict[str, object]]:
    """100 cells: 10 districts x 5 age bands x 2 sexes in one week. Even-numbered reports
    restate a week every client uses (corrections); odd ones state a week of their own."""
    week = 1 + number % 4 if number % 2 == 0 else 5 + (client * 10_000 + number) % 48
    year = 2025 if number % 2 == 0 else 2026
    first = (client * 10 + number) % (len(areas) - 10)
    return [
        {
            "area": area,
            "week": f"{year}-W{week:02d}",
            "age_band": band,
            "sex": sex,
            "cases": number % 50,
            "deaths": 0,
            "admissions": 1,
            "tests": 10,
        }
        for area in areas[first : first + 10]
        for band in AGE_BANDS
        for sex in SEXES
    ]


@contextmanager
def node_directory(root: Path, backend: str, postgres: str) -> Iterator[NodeSettings]:
    """A fresh node (and for PostgreSQL a fresh schema, dropped afterwards) with a token."""
    directory = root / f"{backend}-{uuid.uuid4().hex[:6]}"
    url, admin, schema = "", None, ""
    if backend == "postgresql":
        schema = f"bench_{uuid.uuid4().hex[:10]}"
        admin = make_engine(postgres)
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        separator = "&" if "?" in postgres else "?"
        url = f"{postgres}{separator}options=-csearch_path%3D{schema}"
    try:
        settings, _key = init_node(
            directory,
            node_id="XA",
            name="Bench",
            database_url=url,
            gazetteer=sample_gazetteer("XA", 25, 10),
        )
        yield settings
    finally:
        if admin is not None:
            with admin.begin() as conn:
                conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
            admin.dispose()


def issue_secret(settings: NodeSettings) -> str:
    node = Node.open(settings)
    try:
        _record, secret = tokens.issue_token(
            node.engine,
            name="bench",
            role="agency",
            schemas=("weekly_epi@1",),
            now=dt.datetime.now(dt.UTC),
        )
    finally:
        node.close()
    return secret


def measure(
    settings: NodeSettings, workers: int, seconds: float
) -> tuple[float, float, float, int]:
    """Reports/s, p50 and p99 in milliseconds, and failed pushes, over ``seconds``."""
    secret = issue_secret(settings)
    areas = districts()
    server, port = start_server(settings.directory, workers=workers)
    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()
    start = time.monotonic()
    counted_from, stop_at = start + WARM_UP, start + WARM_UP + seconds

    def client(number: int) -> None:
        headers = {"Authorization": f"Bearer {secret}"}
        with httpx2.Client(base_url=f"http://127.0.0.1:{port}", timeout=TIMEOUT) as http:
            pushed = 0
            while (began := time.monotonic()) < stop_at:
                body = {"rows": report(number, pushed, areas)}
                try:
                    response = http.post("/v1/reports/weekly_epi@1", json=body, headers=headers)
                    status = response.status_code
                except httpx2.TransportError:  # a timeout: counted as a failed push
                    status = 0
                ended = time.monotonic()
                pushed += 1
                if began < counted_from:
                    continue
                with lock:
                    if status != 201:
                        failures[0] += 1
                    elif ended <= stop_at:
                        latencies.append(ended - began)

    try:
        threads = [threading.Thread(target=client, args=(c,)) for c in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        kill_hard(server)
    latencies.sort()
    if not latencies:
        return 0.0, float("nan"), float("nan"), failures[0]
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    return len(latencies) / seconds, p50, p99, failures[0]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds per cell")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("EXCHANGE_TEST_POSTGRES_URL", ""),
        help="PostgreSQL URL (default: EXCHANGE_TEST_POSTGRES_URL)",
    )
    args = parser.parse_args()
    backends = ["sqlite"] + (["postgresql"] if args.postgres else [])
    if not args.postgres:
        print("PostgreSQL skipped: set EXCHANGE_TEST_POSTGRES_URL or pass --postgres")
    print(f"{CLIENTS} clients, {ROWS}-row reports, {args.seconds:g} s per cell")
    print(
        f"{'workers':>7} {'backend':>10} {'reports/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'failed':>6} {'vs SQLite':>9}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for workers in WORKERS:
            sqlite_rate = 0.0
            for backend in backends:
                with node_directory(Path(tmp), backend, args.postgres) as settings:
                    rate, p50, p99, failed = measure(settings, workers, args.seconds)
                sqlite_rate = rate if backend == "sqlite" else sqlite_rate
                ratio = rate / sqlite_rate if sqlite_rate else float("nan")
                print(
                    f"{workers:>7} {backend:>10} {rate:>10.1f} {p50:>8.1f} {p99:>8.1f} "
                    f"{failed:>6} {ratio:>9.2f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
