"""``exchange audit``: export offline, checkpoint, public key, and verify with exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import delete
from typer.testing import CliRunner

from exchange.cli import app
from nodes.audit.tables import audit_entries
from nodes.database import make_engine
from nodes.settings import NodeSettings

runner = CliRunner()


def run(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.output


@pytest.fixture
def node_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "xa"
    run("init", str(directory), "--node-id", "XA", "--name", "Republic of XA")
    run("token", "create", str(directory), "--name", "eu-ombudsman", "--role", "auditor")
    return directory


@pytest.fixture
def public_key(node_dir: Path, tmp_path: Path) -> Path:
    path = tmp_path / "xa.pem"
    path.write_text(run("audit", "public-key", str(node_dir)).split("\n", 1)[1])
    return path


def test_export_then_verify_reports_counts_and_the_tree_head(
    node_dir: Path, public_key: Path, tmp_path: Path
) -> None:
    out = tmp_path / "export.jsonl"
    exported = run("audit", "export", str(node_dir), "--out", str(out))
    assert "Exported 2 entries" in exported  # the token issue, and the export itself
    assert not out.with_name("export.jsonl.partial").exists()
    verified = run("audit", "verify", str(out), "--public-key", str(public_key))
    assert verified.startswith("OK: 2 entries, 2 checkpoints")
    assert "node XA" in verified
    assert b'"actor":"operator:' in out.read_bytes()  # the CLI's actor is the OS account


def test_verify_names_a_modified_entry_and_exits_1(
    node_dir: Path, public_key: Path, tmp_path: Path
) -> None:
    out = tmp_path / "export.jsonl"
    run("audit", "export", str(node_dir), "--out", str(out))
    out.write_bytes(out.read_bytes().replace(b"of role auditor", b"of role agency!"))
    failed = run("audit", "verify", str(out), "--public-key", str(public_key), code=1)
    assert failed.startswith("FAILED [entry-modified]: entry seq 0 (line 3)")


def test_verify_catches_a_rollback_against_a_kept_checkpoint(
    node_dir: Path, public_key: Path, tmp_path: Path
) -> None:
    early = tmp_path / "early.jsonl"
    run("audit", "export", str(node_dir), "--out", str(early))
    run("token", "create", str(node_dir), "--name", "second-auditor", "--role", "auditor")
    kept = tmp_path / "kept.txt"
    signed = run("audit", "checkpoint", str(node_dir))
    kept.write_text(signed.splitlines()[-1])
    later = tmp_path / "later.jsonl"
    run("audit", "export", str(node_dir), "--out", str(later))
    ok = run(
        "audit", "verify", str(later), "--public-key", str(public_key), "--checkpoint", str(kept)
    )
    assert "consistent with the kept checkpoint of size 3" in ok
    rolled = run(
        "audit", "verify", str(early), "--public-key", str(public_key), "--checkpoint", str(kept),
        code=1,
    )  # fmt: skip
    assert rolled.startswith("FAILED [rollback]")
    assert "entry seq 2 is gone" in rolled


def test_verify_exits_2_on_usage_errors(node_dir: Path, public_key: Path, tmp_path: Path) -> None:
    out = tmp_path / "export.jsonl"
    run("audit", "export", str(node_dir), "--out", str(out))
    bad_key = tmp_path / "bad.pem"
    bad_key.write_text("not a key")
    assert (
        runner.invoke(app, ["audit", "verify", str(out), "--public-key", str(bad_key)]).exit_code
        == 2
    )
    missing = ["audit", "verify", str(tmp_path / "nope"), "--public-key", str(public_key)]
    assert runner.invoke(app, missing).exit_code == 2


def test_verify_accepts_the_base64url_key_of_the_node_descriptor(
    node_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "export.jsonl"
    run("audit", "export", str(node_dir), "--out", str(out))
    result = runner.invoke(app, ["audit", "public-key", str(node_dir)])
    b64url = next(
        line.split(": ", 1)[1] for line in result.output.splitlines() if "base64url" in line
    )
    key = tmp_path / "key.txt"
    key.write_text(b64url)
    assert run("audit", "verify", str(out), "--public-key", str(key)).startswith("OK")


def test_a_cut_log_makes_every_node_command_refuse(node_dir: Path) -> None:
    run("audit", "checkpoint", str(node_dir))
    engine = make_engine(NodeSettings.load(node_dir).database)
    with engine.begin() as conn:
        conn.execute(delete(audit_entries))
    engine.dispose()
    refused = runner.invoke(app, ["token", "list", str(node_dir)])
    assert refused.exit_code == 1
    assert "refusing to serve: the log was cut short" in refused.output


def test_serve_refuses_a_cut_log_before_starting_a_worker(node_dir: Path) -> None:
    run("audit", "checkpoint", str(node_dir))
    engine = make_engine(NodeSettings.load(node_dir).database)
    with engine.begin() as conn:
        conn.execute(delete(audit_entries))
    engine.dispose()
    refused = runner.invoke(app, ["serve", str(node_dir), "--port", "1"])
    assert refused.exit_code == 1
    assert "refusing to serve" in refused.output
