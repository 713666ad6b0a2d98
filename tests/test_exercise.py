"""``exchange exercise``: scenarios are checked, the outbreak follows the seed, and the
CI-sized exercise (3 real server processes, every shock) meets every expectation."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from exchange.cli import app
from exchange.exercises import outbreak, reviews, runner
from exchange.exercises.scenario import Scenario, ScenarioError, load
from nodes.directory import sample_gazetteer

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
    assert report.seconds < 110
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
