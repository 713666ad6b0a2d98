"""Over real sockets: an ``exchange serve`` process, and the operator's CLI as processes.

XB pins XA by fingerprint from its descriptor, pulls a release into a CSV, follows XA's
key rotation while XA keeps serving, and gets a clear error once XA is down.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from exchange.demo.data import NATIONS, as_csv, outbreak_rows, outbreak_weeks, policy_yaml
from nodes import tokens
from nodes.directory import init_node, sample_gazetteer
from nodes.identity import load_current, public_key_text
from nodes.node import Node
from tests.conftest import now
from tests.servers import kill_hard, start_server

pytestmark = pytest.mark.slow


def exchange(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exchange", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
        check=False,
    )


@pytest.fixture
def xa_and_xb(
    tmp_path: Path,
) -> Iterator[tuple[Path, Path, str, subprocess.Popen[bytes], str]]:
    """XA served (with data, XB its peer), XB not; the last item is the URL XA states."""
    xa, xb = NATIONS[0], NATIONS[1]
    xa_settings, xa_key = init_node(
        tmp_path / "XA", node_id="XA", name=xa.name, gazetteer=sample_gazetteer("XA")
    )
    xa_settings.policy_file.write_text(policy_yaml(xa))
    xb_settings, _ = init_node(
        tmp_path / "XB", node_id="XB", name=xb.name, gazetteer=sample_gazetteer("XB")
    )
    node = Node.open(xa_settings)
    try:
        _record, secret = tokens.issue_token(
            node.engine, name="moh", role="agency", schemas=("weekly_epi@1",), now=now()
        )
        rows = as_csv(outbreak_rows(xa, node.gazetteer, now().date()))
    finally:
        node.close()
    server, port = start_server(xa_settings.directory, public_url=True)
    try:
        pushed = httpx2.post(
            f"http://127.0.0.1:{port}/v1/reports/weekly_epi@1",
            content=rows,
            headers={"Authorization": f"Bearer {secret}", "Content-Type": "text/csv"},
            timeout=30,
        )
        assert pushed.status_code == 201, pushed.text
        xb_public = public_key_text(load_current(xb_settings.keys_dir).public_key)
        added = exchange(
            "peer", "add", xa_settings.directory, "--id", "XB", "--url", "http://127.0.0.1:1",
            "--key", xb_public,
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        url = f"http://127.0.0.1:{port}"
        yield xa_settings.directory, xb_settings.directory, xa_key.kid, server, url
    finally:
        if server.poll() is None:
            kill_hard(server)


def _pull(xb: Path, out: Path, *by: str) -> subprocess.CompletedProcess[str]:
    weeks = outbreak_weeks(now().date())
    return exchange(
        "pull", xb, "--from", "XA", "--schema", "weekly_epi@1", "--by", ",".join(by),
        "--measures", "cases", "--since", weeks[0], "--until", weeks[-1],
        "--purpose", "outbreak_response", "--out", out, "--timeout", "2",
    )  # fmt: skip


def test_pin_pull_rotate_and_peer_down_over_sockets(
    xa_and_xb: tuple[Path, Path, str, subprocess.Popen[bytes], str], tmp_path: Path
) -> None:
    xa, xb, xa_kid, server, url = xa_and_xb
    wrong = exchange("peer", "add", xb, "--from-url", url, "--fingerprint", "A" * 43)
    assert wrong.returncode == 1
    assert "no key with fingerprint" in wrong.stderr
    pinned = exchange("peer", "add", xb, "--from-url", url, "--fingerprint", xa_kid)
    assert pinned.returncode == 0, pinned.stderr

    first = _pull(xb, tmp_path / "provinces.csv", "area:adm1", "week")
    assert first.returncode == 0, first.stderr
    with (tmp_path / "provinces.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4 * 16
    assert set(rows[0]) == {"area", "week", "cases", "cases_accuracy"}
    assert f"Signed by XA's key {xa_kid}" in first.stdout

    rotated = exchange("keys", "rotate", xa, "--grace-hours", "1")
    assert rotated.returncode == 0, rotated.stderr
    second = _pull(xb, tmp_path / "national.json", "area:adm0", "week")
    assert second.returncode == 0, second.stderr
    new_kid = load_current(xa / "keys").kid
    assert new_kid != xa_kid
    assert f"Signed by XA's key {new_kid}" in second.stdout
    document = json.loads((tmp_path / "national.json").read_bytes())
    assert document["provider"]["id"] == "XA"
    assert len(document["release"]["cells"]) == 16
    listed = exchange("peer", "list", xb)
    assert new_kid in listed.stdout
    assert xa_kid in listed.stdout

    kill_hard(server)
    down = _pull(xb, tmp_path / "again.csv", "area:adm1", "week")
    assert down.returncode == 1
    message = " ".join(down.stderr.split())
    assert f"peer XA at {url}/v1/releases: could not be reached" in message
