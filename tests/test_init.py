"""``exchange init`` is all or nothing: checked in memory, built aside, renamed into place."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from exchange.cli import app as cli
from nodes import migrate
from nodes.directory import NodeExistsError, init_node
from nodes.settings import SETTINGS_FILE

runner = CliRunner()


def test_an_invalid_setting_writes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "parent" / "xa"
    with pytest.raises(ValueError, match="node_id"):
        init_node(target, node_id="not valid!", name="XA")
    with pytest.raises(ValueError, match="week_system"):
        init_node(target, node_id="XA", name="XA", week_system="lunar")
    assert list(tmp_path.iterdir()) == []


def test_a_failure_while_building_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(_engine: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(migrate, "upgrade", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        init_node(tmp_path / "new" / "xa", node_id="XA", name="XA")
    assert list(tmp_path.iterdir()) == []  # neither the node, its staging copy, nor "new"

    (tmp_path / "kept").mkdir()
    with pytest.raises(RuntimeError):
        init_node(tmp_path / "kept" / "xa", node_id="XA", name="XA")
    assert list((tmp_path / "kept").iterdir()) == []


def test_a_node_is_built_in_place_of_an_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "xa").mkdir()
    settings, key = init_node(tmp_path / "xa", node_id="XA", name="XA")
    assert settings.directory == tmp_path / "xa"
    assert (settings.directory / SETTINGS_FILE).is_file()
    assert (settings.keys_dir / f"{key.kid}.pem").is_file()
    assert settings.database.endswith(f"{tmp_path / 'xa'}/node.sqlite3")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["xa"]  # no staging leftovers


def test_a_directory_holding_anything_is_refused(tmp_path: Path) -> None:
    (tmp_path / "xa").mkdir()
    (tmp_path / "xa" / "notes.txt").write_text("mine")
    with pytest.raises(NodeExistsError, match="not empty"):
        init_node(tmp_path / "xa", node_id="XA", name="XA")
    assert [p.name for p in (tmp_path / "xa").iterdir()] == ["notes.txt"]


def test_the_cli_lists_and_checks_the_week_systems(tmp_path: Path) -> None:
    assert "iso" in runner.invoke(cli, ["init", "--help"]).output
    bad = runner.invoke(
        cli, ["init", str(tmp_path / "xa"), "--node-id", "XA", "--name", "XA", "--week-system", "x"]
    )
    assert bad.exit_code == 2
    assert "'x' is not one of" in bad.output
    assert not (tmp_path / "xa").exists()
    ok = runner.invoke(
        cli,
        ["init", str(tmp_path / "xa"), "--node-id", "XA", "--name", "XA", "--week-system", "mmwr"],
    )
    assert ok.exit_code == 0, ok.output
    assert 'week_system = "mmwr"' in (tmp_path / "xa" / SETTINGS_FILE).read_text()
