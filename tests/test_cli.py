"""The operator's and agency's command line, end to end."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import httpx2
import pytest
from typer.testing import CliRunner

from exchange.cli import app
from nodes.settings import NodeSettings
from tests.samples import as_csv, weekly_rows
from tests.servers import kill_hard, start_server

runner = CliRunner()


def run(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_init_creates_a_private_key_and_refuses_to_overwrite(tmp_path: Path) -> None:
    node_dir = tmp_path / "xa"
    output = run("init", str(node_dir), "--node-id", "XA", "--name", "Republic of XA")
    assert "Identity key id" in output
    keys = list((node_dir / "keys").glob("*.pem"))
    assert len(keys) == 1
    assert stat.S_IMODE(keys[0].stat().st_mode) == 0o600
    assert NodeSettings.load(node_dir).insecure_reasons() == []
    again = runner.invoke(app, ["init", str(node_dir), "--node-id", "XA", "--name", "Other"])
    assert again.exit_code == 1
    assert "already holds a node" in again.output
    assert "Republic of XA" in (node_dir / "node.toml").read_text()


def test_init_takes_an_iso_country_gazetteer_by_default(tmp_path: Path) -> None:
    run("init", str(tmp_path / "ht"), "--node-id", "HT", "--name", "Haïti")
    assert "HT-OU," in (tmp_path / "ht" / "gazetteer.csv").read_text()


def test_serve_refuses_insecure_settings_and_says_which(tmp_path: Path) -> None:
    node_dir = tmp_path / "xa"
    run(
        "init",
        str(node_dir),
        "--node-id",
        "XA",
        "--name",
        "XA",
        "--public-url",
        "http://203.0.113.5:8000",
    )
    key = next((node_dir / "keys").glob("*.pem"))
    key.chmod(0o644)
    result = runner.invoke(app, ["serve", str(node_dir)])
    assert result.exit_code == 1
    assert "plain HTTP" in result.output
    assert "readable by others" in result.output


def test_tokens_are_shown_once_and_listed_without_secrets(tmp_path: Path) -> None:
    node_dir = tmp_path / "xa"
    run("init", str(node_dir), "--node-id", "XA", "--name", "XA")
    output = run("token", "create", str(node_dir), "--name", "moh", "--schema", "weekly_epi@1")
    secret = re.search(r"xt_[A-Za-z0-9_-]{20,}", output)
    assert secret is not None
    listing = run("token", "list", str(node_dir))
    assert "moh" in listing
    assert secret.group() not in listing
    run("token", "revoke", str(node_dir), "moh")
    (listed,) = json.loads(run("token", "list", str(node_dir), "--json"))
    assert listed["state"] == "revoked"
    assert listed["revoked_at"]
    assert listed["expires_at"] is None
    assert secret.group() not in json.dumps(listed)
    bad = runner.invoke(app, ["token", "create", str(node_dir), "--name", "x", "--role", "king"])
    assert bad.exit_code == 2
    assert "'king' is not one of" in bad.output
    assert "agency" in run("token", "create", "--help")
    assert "mmwr" in run("init", "--help")


def test_a_command_on_a_missing_node_says_so(tmp_path: Path) -> None:
    result = runner.invoke(app, ["token", "list", str(tmp_path / "nowhere")])
    assert result.exit_code == 1
    assert "exchange init" in result.output


@pytest.mark.slow
def test_push_a_csv_through_a_real_server(tmp_path: Path) -> None:
    node_dir = tmp_path / "xa"
    run("init", str(node_dir), "--node-id", "XA", "--name", "XA")
    secret = re.search(
        r"xt_\S+",
        run("token", "create", str(node_dir), "--name", "moh", "--schema", "weekly_epi@1"),
    )
    assert secret is not None
    report = tmp_path / "weekly.csv"
    report.write_text(as_csv(weekly_rows(range(1, 11))))
    bad = tmp_path / "bad.csv"
    bad.write_text(as_csv(weekly_rows()).replace("XA-P1-D1", "XA-P9"))
    server, port = start_server(node_dir)
    try:
        url = f"http://127.0.0.1:{port}"
        pushed = run(
            "push",
            "weekly_epi@1",
            str(report),
            "--url",
            url,
            "--token",
            secret.group(),
            "--chunk-rows",
            "15",
        )
        assert "stored 40 rows as one report in 3 part(s)" in pushed
        four_rows = weekly_rows(range(1, 2))  # the case: rows 1-2 used to be stored
        four_rows[3]["tests"] = "twelve"
        four = tmp_path / "four.csv"
        four.write_text(as_csv(four_rows))
        options = ["--url", url, "--chunk-rows", "2", "--token", secret.group()]
        half = runner.invoke(app, ["push", "weekly_epi@1", str(four), *options])
        assert half.exit_code == 1
        assert "row 5, tests='twelve'" in half.output  # the file's line: the header is line 1
        refused = runner.invoke(
            app, ["push", "weekly_epi@1", str(bad), "--url", url, "--token", secret.group()]
        )
        assert refused.exit_code == 1
        assert "row 2, area='XA-P9'" in refused.output
        listing = httpx2.get(
            f"{url}/v1/reports", headers={"Authorization": f"Bearer {secret.group()}"}
        ).json()
        assert sum(r["rows"] for r in listing["reports"]) == 40
    finally:
        kill_hard(server)
