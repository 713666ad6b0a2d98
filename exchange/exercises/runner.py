"""Run an exercise: build the federation, start its servers, push the outbreak, play the
timeline, check every expectation, write ``exercise.json``, stop everything.

Every server process, the nodes' temporary directory and, on PostgreSQL, the nodes'
schemas are cleaned up whatever happens (``finally``; `exchange.exercises.servers` also
stops its processes ``atexit``). The ``after`` hook runs once the servers have stopped, with
the output directory and the node directories (and their databases: still there), to write
after-action reviews.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
from rich.console import Console

from exchange.demo.data import as_csv
from exchange.exercises import federation, outbreak, servers, shocks, shocks_data
from exchange.exercises import scenario as sc
from exchange.exercises.context import Exercise
from exchange.exercises.databases import Databases
from exchange.exercises.results import Check, Checks, table

RESULT_FILE = "exercise.json"


def _shock(ex: Exercise, step: sc.Step, checks: Checks) -> None:
    """Play one step: the shock its ``shock`` field names."""
    match step:
        case sc.PullRound():
            shocks.pull_round(ex, step, checks)
        case sc.Offline():
            shocks.offline(ex, step, checks)
        case sc.RotateKey():
            shocks.rotate_key(ex, step, checks)
        case sc.RevokeKey():
            shocks.revoke_key(ex, step, checks)
        case sc.Sunset():
            shocks.sunset(ex, step, checks)
        case sc.Budget():
            shocks.budget(ex, step, checks)
        case sc.Escalation():
            shocks.escalation(ex, step, checks)
        case sc.Correction():
            shocks_data.correction(ex, step, checks)
        case sc.Rollback():
            shocks_data.rollback(ex, step, checks)


@dataclass(frozen=True)
class Report:
    """What the exercise found; ``met`` is False if any expectation was not met."""

    scenario: sc.Scenario
    checks: list[Check]
    outbreak: dict[str, str]  # node id -> digest of its counts
    seconds: float
    database: str = "sqlite"  # or "postgresql"
    #: node id -> the PostgreSQL schema the run made for it (all dropped when it ended).
    schemas: dict[str, str] = field(default_factory=dict)

    @property
    def met(self) -> bool:
        return bool(self.checks) and all(c.met for c in self.checks)

    def decisions(self) -> list[tuple[int, str, str, bool, str]]:
        """What a seed decides, to compare two runs."""
        return [(c.step, c.shock, c.name, c.met, c.decision) for c in self.checks]

    def as_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario.model_dump(mode="json"),
            "met": self.met,
            "seconds": round(self.seconds, 1),
            "database": self.database,
            "schemas": self.schemas,
            "outbreak": self.outbreak,
            "checks": [c.as_json() for c in self.checks],
        }


def _push_outbreak(ex: Exercise, member: federation.ExerciseNode) -> None:
    answer = ex.http.post(
        f"{member.url}/v1/reports/{federation.SCHEMA}",
        content=as_csv(ex.rows[member.id]).encode(),
        headers={**member.bearer("agency"), "Content-Type": "text/csv"},
    )
    if answer.status_code != 201:
        raise RuntimeError(
            f"{member.id}'s outbreak was refused: {answer.status_code} {answer.text}"
        )


def _play(ex: Exercise, console: Console) -> list[Check]:
    found: list[Check] = []
    for number, step in enumerate(ex.scenario.timeline, start=1):
        checks = Checks(number, step.shock)
        console.print(f"step {number}: {step.shock} {' '.join(step.nodes())}", highlight=False)
        try:
            _shock(ex, step, checks)
        except Exception as exc:  # a shock that crashes is an expectation not met
            checks.add(
                "the shock ran",
                expectation="the step runs to the end",
                observed=f"{type(exc).__name__}: {exc}",
                met=False,
                decision=f"crashed: {type(exc).__name__}",
            )
        found += checks.found
    return found


#: Writes reviews of the nodes' logs once the servers stopped; returns the files written,
#: raises if a log could not be reviewed.
After = Callable[[Path, list[Path]], list[Path]]


def _reviewed(
    after: After, out_dir: Path, members: list[federation.ExerciseNode], *, step: int
) -> list[Check]:
    """The ``after`` hook as one more check: a rehearsal whose record does not verify has not
    shown what it was meant to."""
    checks = Checks(step, "after-action")
    expectation = "every node's audit log verifies and gets a review, and so does the federation"
    try:
        written = after(out_dir, [m.directory for m in members])
    except Exception as exc:  # any failure to review is an expectation not met
        observed, met = f"{type(exc).__name__}: {exc}", False
    else:
        observed, met = f"{len(written)} files in {out_dir}", bool(written)
    checks.add(
        "after-action reviews are written",
        expectation=expectation,
        observed=observed,
        met=met,
        decision="written" if met else "not written",
    )
    return checks.found


def _drop(databases: Databases, console: Console) -> None:
    """Drop the run's schemas; one that cannot be dropped is named, never left silently."""
    for left in databases.drop():
        console.print(
            f"[bold red]schema not dropped[/] {left}: drop it with DROP SCHEMA ... CASCADE",
            highlight=False,
        )


def run(
    scenario: sc.Scenario,
    *,
    out_dir: Path,
    console: Console | None = None,
    after: After | None = None,
    database_url: str = "",
) -> Report:
    """Play ``scenario`` on a federation of real servers; write ``out_dir/exercise.json``.

    With a PostgreSQL ``database_url`` each node gets a fresh schema of that database, made
    here and dropped when the run ends. Raises DatabaseError if the URL is not PostgreSQL
    or its server refuses the schemas (nothing is left behind then either)."""
    databases = Databases(database_url)
    made: dict[str, str] = {}
    console = console or Console()
    started = time.monotonic()
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="exercise-"))
    members: list[federation.ExerciseNode] = []
    checks: list[Check] = []
    digests: dict[str, str] = {}
    try:
        today = dt.datetime.now(dt.UTC).date()
        labels = outbreak.week_labels(today, scenario.weeks)
        waves = {
            w.node_id: w for w in outbreak.waves(scenario.node_ids, scenario.seed, scenario.weeks)
        }
        console.rule(
            f"[bold]Exercise {scenario.name}: {scenario.nodes} nodes, seed {scenario.seed}, "
            f"{databases.kind}"
        )
        databases.create(scenario.node_ids)
        made = dict(databases.schemas)
        members = federation.build(work, scenario, waves, databases)
        for member in members:
            federation.start(member)
        federation.introduce(members)
        with httpx2.Client(timeout=30) as http:
            ex = Exercise(scenario, {m.id: m for m in members}, http, labels, databases=databases)
            for member in members:
                rows = outbreak.rows_for(
                    member.wave, member.node.gazetteer, scenario.seed, scenario.weeks, today
                )
                ex.rows[member.id] = rows
                digests[member.id] = outbreak.digest(rows, labels)
                _push_outbreak(ex, member)
            order = sorted(waves.values(), key=lambda w: w.order)
            console.print(
                "The outbreak crosses "
                + " → ".join(f"{w.node_id} (week {w.arrival_week:.1f})" for w in order),
                highlight=False,
            )
            checks = _play(ex, console)
    finally:
        for member in members:
            member.close()
            member.server.stop()
        servers.stop_all()
        logs = out_dir / "logs"
        logs.mkdir(exist_ok=True)
        for member in members:
            if member.server.log_file.exists():
                shutil.copy2(member.server.log_file, logs / f"{member.id}.log")
        try:
            if after is not None:
                checks += _reviewed(after, out_dir, members, step=len(scenario.timeline) + 1)
        finally:
            shutil.rmtree(work, ignore_errors=True)
            _drop(databases, console)
    report = Report(scenario, checks, digests, time.monotonic() - started, databases.kind, made)
    (out_dir / RESULT_FILE).write_text(
        json.dumps(report.as_json(), indent=2) + "\n", encoding="utf-8"
    )
    console.print(table(checks))
    verdict = "[green]every expectation met" if report.met else "[bold red]expectations NOT met"
    console.print(f"{verdict}[/] in {report.seconds:.1f} s; results in {out_dir / RESULT_FILE}")
    return report
