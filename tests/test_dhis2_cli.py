"""``exchange dhis2 check`` and ``exchange push --format dhis2`` against a real server."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import httpx2
from typer.testing import CliRunner

from exchange.cli import app
from tests.servers import kill_hard, start_server

runner = CliRunner()
DATA = Path(__file__).parent / "data" / "dhis2"
MAPPING = Path(__file__).parents[1] / "docs" / "examples" / "dhis2.yaml"


def run(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def make_node(tmp_path: Path) -> Path:
    node_dir = tmp_path / "xa"
    run("init", str(node_dir), "--node-id", "XA", "--name", "XA")
    return node_dir


def test_check_a_good_mapping_and_a_bad_one(tmp_path: Path) -> None:
    node_dir = make_node(tmp_path)
    missing = runner.invoke(app, ["dhis2", "check", str(node_dir)])
    assert missing.exit_code == 1
    assert "dhis2.yaml does not exist" in missing.output
    shutil.copy(MAPPING, node_dir / "dhis2.yaml")
    good = run("dhis2", "check", str(node_dir))
    assert "is valid: 4 data elements into weekly_epi@1; 28 category option combos" in good
    bad = MAPPING.read_text().replace("measure: deaths", "measure: death")
    bad = bad.replace("area: XA-P4-D3", "area: XA-P4-D9")
    (node_dir / "dhis2.yaml").write_text(bad)
    refused = runner.invoke(app, ["dhis2", "check", str(node_dir)])
    assert refused.exit_code == 1
    assert "2 mistake(s)" in refused.output
    assert "'death' is not a measure of weekly_epi@1" in refused.output
    assert "area 'XA-P4-D9' is not in this node's gazetteer" in refused.output


def test_push_format_dhis2_through_a_real_server(tmp_path: Path) -> None:
    node_dir = make_node(tmp_path)
    shutil.copy(MAPPING, node_dir / "dhis2.yaml")
    secret = re.search(
        r"xt_\S+",
        run("token", "create", str(node_dir), "--name", "moh", "--schema", "weekly_epi@1"),
    )
    assert secret is not None
    server, port = start_server(node_dir)
    try:
        options = ["--url", f"http://127.0.0.1:{port}", "--token", secret.group()]
        pushed = run("push", "--format", "dhis2", str(DATA / "weekly.json"), *options)
        assert "OK: imported 7, updated 0, ignored 0, deleted 0" in pushed
        again = run("push", "--format", "dhis2", str(DATA / "weekly.json"), *options)
        assert "ignored 7" in again
        csv = run("push", "--format", "dhis2", str(DATA / "weekly.csv"), *options)
        assert "imported 3" in csv
        refused = runner.invoke(
            app, ["push", "--format", "dhis2", str(DATA / "unknown.json"), *options]
        )
        assert refused.exit_code == 1
        assert "E7610 dataElement 'fbfJHSPpUQD'" in refused.output
        assert "E7612 orgUnit 'DiszpKrYNg8'" in refused.output
        wrong = runner.invoke(
            app,
            ["push", "--format", "dhis2", str(DATA / "weekly.json"), *options[:2], "--token", "x"],
        )
        assert wrong.exit_code == 1
        assert "401" in wrong.output
        with httpx2.Client(base_url=f"http://127.0.0.1:{port}") as client:
            mine = client.get(
                "/v1/reports", headers={"Authorization": f"Bearer {secret.group()}"}
            ).json()
        assert [r["rows"] for r in mine["reports"]] == [2, 3]
    finally:
        kill_hard(server)
