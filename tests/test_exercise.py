"""``exchange exercise``: scenarios are checked, the outbreak follows the seed, and the
CI-sized exercise (3 real server processes, every shock) meets every expectation, on SQLite
and on PostgreSQL (a schema per node, none left afterwards)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from rich.console import Console
from sqlalchemy import text
from typer.testing import CliRunner

from exchange.cli import app
from exchange.exercises import federation, outbreak, reviews, runner, shocks_data
from exchange.exercises.context import Exercise
from exchange.exercises.databases import DatabaseError, Databases
from exchange.exercises.results import Checks
from exchange.exercises.scenario import Rollback, Scenario, ScenarioError, load
from nodes.database import make_engine
from nodes.directory import sample_gazetteer
from nodes.settings import NodeSettings
from tests.conftest import NO_POSTGRES, POSTGRES_URL

CI_SCENARIO = Path(__file__).parent.parent / "docs" / "exercises" / "ci.yaml"
ALL_SHOCKS = {
    "pull_round", "offline", "rotate_key", "revoke_key", "sunset", "budget", "correction",
    "rollback", "escalation",
}  # fmt: skip


def _write(tmp_path: Path, data: dict[str, object]) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_shipped_scenarios_load_and_ci_has_every_shock() -> None:
    ci = load(CI_SCENARIO)
    assert ci.nodes == 3
    assert {step.shock for step in ci.timeline} == ALL_SHOCKS
    regional = load(CI_SCENARIO.with_name("regional.yaml"))
    assert regional.nodes > 3


def test_a_step_naming_a_missing_node_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, {"name": "x", "timeline": [{"shock": "offline", "node": "XD"}]})
    with pytest.raises(ScenarioError, match="names XD, but a federation of 3 nodes"):
        load(path)
    with pytest.raises(ScenarioError, match="XC"):  # --nodes 2 drops XC, which ci.yaml uses
        load(CI_SCENARIO).with_overrides(nodes=2)


def test_a_misspelt_parameter_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, {"name": "x", "timeline": [{"shock": "offline", "nod": "XA"}]})
    with pytest.raises(ScenarioError, match="nod"):
        load(path)


def test_the_outbreak_depends_on_the_seed_only() -> None:
    import datetime as dt

    ids = ("XA", "XB", "XC")
    day, later = dt.date(2026, 3, 4), dt.date(2026, 9, 30)

    def digests(seed: int, today: dt.date) -> list[str]:
        labels = outbreak.week_labels(today, 8)
        return [
            outbreak.digest(
                outbreak.rows_for(w, sample_gazetteer(w.node_id), seed, 8, today), labels
            )
            for w in outbreak.waves(ids, seed, 8)
        ]

    assert digests(5, day) == digests(5, later)  # same counts on another date
    assert digests(5, day) != digests(6, day)
    waves = outbreak.waves(ids, 5, 8)
    assert sorted(w.order for w in waves) == [0, 1, 2]
    first = min(waves, key=lambda w: w.order)
    assert all(w.arrival_week >= first.arrival_week for w in waves)  # the wave travels


@pytest.mark.slow
def test_the_ci_exercise_meets_every_expectation(tmp_path: Path) -> None:
    seen: list[tuple[Path, list[Path]]] = []

    def after(out: Path, node_dirs: list[Path]) -> list[Path]:
        assert all((d / "node.toml").is_file() for d in node_dirs)  # still there for reviews
        seen.append((out, node_dirs))
        return reviews.write(out, node_dirs)

    report = runner.run(
        load(CI_SCENARIO), out_dir=tmp_path, console=Console(width=200), after=after
    )
    failed = [(c.shock, c.name, c.observed) for c in report.checks if not c.met]
    assert failed == []
    assert {c.shock for c in report.checks} == ALL_SHOCKS | {"after-action"}
    written = json.loads((tmp_path / "exercise.json").read_text())
    assert written["met"] is True and len(written["checks"]) == len(report.checks)
    assert seen and len(seen[0][1]) == 3
    assert not any(d.exists() for d in seen[0][1])  # temporary node directories removed
    folder = tmp_path / reviews.FOLDER
    assert sorted(p.name for p in folder.iterdir()) == [
        f"{name}.{ext}" for name in ("XA", "XB", "XC", "federation") for ext in ("html", "json")
    ]
    federation = json.loads((folder / "federation.json").read_text())
    assert federation["type"] == "crisis-exchange/after-action/v1"
    assert {n["node_id"] for n in federation["nodes"]} == {"XA", "XB", "XC"}
    shared = {(s["node"], s["partner"]) for s in federation["shared"]}
    assert len(shared) == 6  # everyone released to everyone in the first round
    refused = {r["rule"] for r in federation["refusals"]}
    assert "budget" in refused and any(rule.startswith("agreement ") for rule in refused)
    assert report.checks[-1].shock == "after-action" and report.checks[-1].met


def test_a_review_that_cannot_be_written_is_an_expectation_not_met(tmp_path: Path) -> None:
    def broken(_out: Path, _dirs: list[Path]) -> list[Path]:
        raise reviews.ReviewFailedError("XA: entry seq 3 was modified")

    member = SimpleNamespace(directory=tmp_path / "XA")
    (check,) = runner._reviewed(broken, tmp_path, [member], step=9)  # type: ignore[list-item]
    assert (check.step, check.shock, check.met) == (9, "after-action", False)
    assert "entry seq 3 was modified" in check.observed


SMALL = {
    "name": "small",
    "seed": 3,
    "nodes": 2,
    "weeks": 4,
    "budget_epsilon": 3,
    "timeline": [{"shock": "pull_round"}, {"shock": "budget", "provider": "XA", "partner": "XB"}],
}


@pytest.mark.slow
def test_one_seed_gives_the_same_data_and_decisions(tmp_path: Path) -> None:
    scenario = Scenario.model_validate(SMALL)
    console = Console(quiet=True)
    first = runner.run(scenario, out_dir=tmp_path / "1", console=console)
    second = runner.run(scenario, out_dir=tmp_path / "2", console=console)
    assert first.met and second.met
    assert first.outbreak == second.outbreak
    assert first.decisions() == second.decisions()
    assert "after 2 releases" in first.checks[1].decision  # budget 3: one went to the round


@pytest.mark.slow
def test_an_expectation_that_cannot_hold_fails_the_run(tmp_path: Path) -> None:
    broken = {**SMALL, "timeline": [{"shock": "pull_round", "expect": "refused"}]}
    path = _write(tmp_path, broken)
    result = CliRunner().invoke(app, ["exercise", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1, result.output
    written = json.loads((tmp_path / "out" / "exercise.json").read_text())
    assert written["met"] is False
    assert [(c["shock"], c["met"]) for c in written["checks"]] == [
        ("pull_round", False),
        ("after-action", True),
    ]


def _schemas_in_database(prefix: str) -> set[str]:
    engine = make_engine(POSTGRES_URL)
    try:
        with engine.connect() as conn:
            found = conn.execute(
                text("SELECT nspname FROM pg_namespace WHERE nspname LIKE :p"),
                {"p": f"{prefix}%"},
            ).scalars()
            return set(found)
    finally:
        engine.dispose()


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.skipif(not POSTGRES_URL, reason=NO_POSTGRES)
def test_the_ci_exercise_meets_every_expectation_on_postgresql(tmp_path: Path) -> None:
    during: list[set[str]] = []

    def after(out: Path, node_dirs: list[Path]) -> list[Path]:
        urls = [NodeSettings.load(d).database for d in node_dirs]
        assert all(u.startswith(POSTGRES_URL) and "search_path%3Dexercise_" in u for u in urls)
        during.append(_schemas_in_database("exercise_"))  # still there for the reviews
        return reviews.write(out, node_dirs)

    report = runner.run(
        load(CI_SCENARIO),
        out_dir=tmp_path,
        console=Console(width=200),
        after=after,
        database_url=POSTGRES_URL,
    )
    failed = [(c.shock, c.name, c.observed) for c in report.checks if not c.met]
    assert failed == []
    assert {c.shock for c in report.checks} == ALL_SHOCKS | {"after-action"}
    rollback = {c.name: c for c in report.checks if c.shock == "rollback"}
    assert "rolled back" in rollback["the node refuses an old database"].observed
    assert rollback["the peers flag the rollback"].met
    made = set(report.schemas.values())
    assert report.database == "postgresql" and set(report.schemas) == {"XA", "XB", "XC"}
    assert during and made <= during[0]  # one schema per node, used by the servers
    assert not made & _schemas_in_database("exercise_")  # and dropped afterwards
    written = json.loads((tmp_path / "exercise.json").read_text())
    assert written["met"] is True and written["database"] == "postgresql"
    assert POSTGRES_URL not in (tmp_path / "exercise.json").read_text()


@pytest.mark.postgres
@pytest.mark.skipif(not POSTGRES_URL, reason=NO_POSTGRES)
def test_the_schemas_are_dropped_when_the_run_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[str] = []

    def broken(_work: Path, _scenario: Scenario, _waves: object, used: Databases) -> None:
        made.extend(used.schemas.values())
        assert made and made[0] in _schemas_in_database("exercise_")
        raise RuntimeError("a node could not be built")

    monkeypatch.setattr(federation, "build", broken)
    scenario = Scenario.model_validate(SMALL)
    with pytest.raises(RuntimeError, match="could not be built"):
        runner.run(
            scenario, out_dir=tmp_path, console=Console(quiet=True), database_url=POSTGRES_URL
        )
    assert len(made) == 2
    assert not set(made) & _schemas_in_database("exercise_")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("sqlite:///tmp/x.sqlite3", "must be a PostgreSQL one"),
        ("postgresql://u@h/db?options=-csearch_path%3Dpublic", "must not set 'options'"),
    ],
)
def test_a_database_url_that_is_not_a_fresh_postgresql_is_refused(
    tmp_path: Path, url: str, reason: str
) -> None:
    with pytest.raises(DatabaseError, match=reason):
        Databases(url)
    args = ["exercise", str(CI_SCENARIO), "--out", str(tmp_path / "out"), "--database-url", url]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and reason in result.output
    assert not (tmp_path / "out").exists()  # refused before anything started


def test_node_urls_carry_their_own_schema() -> None:
    db = Databases("postgresql://u:secret@h/db?sslmode=disable", {"XA": "exercise_0123abcd_xa"})
    assert db.node_url("XA") == (
        "postgresql://u:secret@h/db?sslmode=disable&options=-csearch_path%3Dexercise_0123abcd_xa"
    )
    assert Databases().node_url("XA") == ""  # SQLite in the node's directory
    with pytest.raises(DatabaseError, match="no schema of this exercise"):
        db.dump("XB", Path("/nonexistent"))


def test_a_rollback_without_the_client_tools_says_what_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shutil, "which", lambda _tool: None)  # no PostgreSQL client
    db = Databases("postgresql://u@127.0.0.1:1/db", {"XA": "exercise_0123abcd_xa"})
    with pytest.raises(DatabaseError, match="pg_restore is not on PATH"):
        db.put_back("XA", Path("/nonexistent/database.pgdump"))  # before dropping anything
    member = SimpleNamespace(id="XA")  # never stopped nor copied: any use would raise
    scenario = load(CI_SCENARIO)
    ex = Exercise(scenario, {"XA": member}, None, [], databases=db)  # type: ignore[dict-item, arg-type]
    checks = Checks(7, "rollback")
    shocks_data.rollback(ex, Rollback(shock="rollback", node="XA"), checks)
    (check,) = checks.found
    assert not check.met and "pg_dump, pg_restore" in check.observed
    assert "postgresql-client" in check.observed
