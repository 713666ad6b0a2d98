"""Several server workers appending at once: every act has exactly one entry, seq is gap-free,
the tree verifies, and a graceful shutdown leaves no entry without a checkpoint."""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter

import httpx2
import pytest

from nodes.audit import checkpoint_store
from nodes.audit.startup import check_log, known_public_keys
from nodes.node import Node
from nodes.settings import NodeSettings
from tests.audit_support import stored_entries
from tests.samples import weekly_rows
from tests.servers import rest_of_stderr, start_server

pytestmark = pytest.mark.slow


def test_three_workers_log_every_push_and_refusal_once(
    settings: NodeSettings, agency_secret: str
) -> None:
    server, port = start_server(settings.directory, workers=3)
    statuses: Counter[int] = Counter()
    lock = threading.Lock()

    def client_thread(worker: int) -> None:
        with httpx2.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            for i in range(15):
                good = {"Authorization": f"Bearer {agency_secret}"}
                bad = {"Authorization": f"Bearer xt_wrong-{worker}-{i}"}
                rows = weekly_rows(range(1 + i % 5, 2 + i % 5), cases=worker)
                pushed = client.post("/v1/reports/weekly_epi@1", json={"rows": rows}, headers=good)
                refused = client.get("/v1/reports", headers=bad)
                with lock:
                    statuses[pushed.status_code] += 1
                    statuses[refused.status_code] += 1

    threads = [threading.Thread(target=client_thread, args=(w,)) for w in range(6)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # graceful: workers sign a last checkpoint
        server.wait(timeout=30)
        rest_of_stderr(server)
    assert statuses == Counter({201: 90, 401: 90})
    node = Node.open(settings)  # the start-up check passes
    try:
        entries = stored_entries(node.engine)
        assert [e["seq"] for e in entries] == list(range(len(entries)))
        actions = Counter(e["action"] for e in entries)
        assert actions["report.push"] == 90
        assert actions["auth.failed"] == 90
        status = check_log(node.engine, public_keys=known_public_keys(settings.keys_dir))
        latest = checkpoint_store.latest_checkpoint(node.engine)
        assert latest is not None
        assert latest.checkpoint.tree_size == status.entries
    finally:
        node.close()
