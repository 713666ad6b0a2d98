"""Kill -9 a server while pushes are in flight: every acknowledged report survives, none twice."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx2
import pytest
from sqlalchemy import func, select

from nodes.node import Node
from nodes.settings import NodeSettings
from nodes.tables import cell_tables, reports
from tests.samples import weekly_rows
from tests.servers import kill_hard, start_server

pytestmark = pytest.mark.slow


def test_acknowledged_pushes_survive_kill_9(settings: NodeSettings, agency_secret: str) -> None:
    server, port = start_server(settings.directory, workers=2)
    acknowledged: dict[str, int] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def pusher(worker: int) -> None:
        with httpx2.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            for i in range(10_000):
                if stop.is_set():
                    return
                key = f"w{worker}-{i}"
                try:
                    response = client.post(
                        "/v1/reports/weekly_epi@1",
                        json={"rows": weekly_rows(range(1 + i % 50, 2 + i % 50), cases=worker)},
                        headers={
                            "Authorization": f"Bearer {agency_secret}",
                            "Idempotency-Key": key,
                        },
                    )
                except httpx2.TransportError:
                    return  # the server is gone
                if response.status_code == 201:
                    with lock:
                        acknowledged[key] = response.json()["report_id"]

    threads = [threading.Thread(target=pusher, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < 40 and time.monotonic() < deadline:
        time.sleep(0.02)
    kill_hard(server)
    stop.set()
    for t in threads:
        t.join()

    node = Node.open(settings)
    try:
        with node.engine.connect() as conn:
            stored = dict(conn.execute(select(reports.c.idempotency_key, reports.c.id)).all())
            keys = conn.execute(select(reports.c.idempotency_key)).scalars().all()
            cells = conn.execute(
                select(func.count()).select_from(cell_tables["weekly_epi@1"])
            ).scalar_one()
    finally:
        node.close()
    assert len(acknowledged) >= 40
    for key, report_id in acknowledged.items():
        assert stored.get(key) == report_id, f"acknowledged report {key} was lost"
    assert len(keys) == len(set(keys)), "a report was stored twice"
    assert cells == 4 * len(stored)  # each report whole: four cells, never part of one


def test_an_interrupted_push_can_be_run_again(
    settings: NodeSettings, agency_secret: str, tmp_path: Path
) -> None:
    """Running a finished push again stores nothing new and answers with the same report."""
    from exchange.clients.push import push_file
    from tests.samples import as_csv

    report = tmp_path / "weekly.csv"
    report.write_text(as_csv(weekly_rows(range(1, 40))))
    server, port = start_server(settings.directory)
    try:
        with httpx2.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            first = push_file(
                client, token=agency_secret, schema_id="weekly_epi@1", path=report, chunk_rows=20
            )
            again = push_file(
                client, token=agency_secret, schema_id="weekly_epi@1", path=report, chunk_rows=20
            )
    finally:
        kill_hard(server)
    assert first.parts == 8
    assert not first.replayed
    assert first.rows == 156
    assert again.replayed
    assert again.parts == 0
    assert again.receipt["report_id"] == first.receipt["report_id"]
