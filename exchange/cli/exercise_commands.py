"""``exchange exercise SCENARIO.yaml``: a joint exercise on a federation of real servers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from exchange.cli.common import console, fail


def exercise(
    scenario_file: Annotated[
        Path, typer.Argument(help="The scenario (see docs/exercises/)", exists=True, dir_okay=False)
    ],
    nodes: Annotated[
        int | None, typer.Option(min=2, max=20, help="How many nodes (default: the scenario's)")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(min=0, help="The seed (default: the scenario's)")
    ] = None,
    out: Annotated[Path, typer.Option(help="Where exercise.json and the servers' logs go")] = Path(
        "exercise-out"
    ),
    database_url: Annotated[
        str,
        typer.Option(
            envvar="EXCHANGE_EXERCISE_DATABASE_URL",
            help="PostgreSQL URL: each node gets a fresh schema there, dropped afterwards "
            "(default: SQLite in each node's directory)",
            show_default=False,
        ),
    ] = "",
) -> None:
    """Run the scenario's shocks on real node servers; exit 1 if any expectation is not met.
    Writes exercise.json, the servers' logs and an after-action review of every node and of
    the federation (after-action/)."""
    from exchange.exercises import reviews, runner
    from exchange.exercises.databases import DatabaseError, Databases
    from exchange.exercises.scenario import ScenarioError, load

    try:
        scenario = load(scenario_file).with_overrides(nodes=nodes, seed=seed)
        Databases(database_url)  # a wrong URL is refused before anything starts
        report = runner.run(
            scenario, out_dir=out, console=console, after=reviews.write, database_url=database_url
        )
    except (ScenarioError, DatabaseError) as exc:
        fail(str(exc))
    if not report.met:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("exercise")(exercise)
