"""``exchange dhis2 check DIR``: is this node's ``dhis2.yaml`` usable, and if not, why.

The check is the one the node runs when a DHIS2 instance pushes (``compile_mapping``),
against the node's schemas and gazetteer, without opening its database.
"""

from __future__ import annotations

from pathlib import Path

import typer

from exchange.cli.common import NodeDir, console, errors, fail

dhis2_app = typer.Typer(help="DHIS2: check the mapping of data value sets to reports")


@dhis2_app.command("check")
def check(directory: NodeDir) -> None:
    """Check DIR/dhis2.yaml against the node's schemas and gazetteer; name every mistake."""
    from exchange.formats.dhis2_mapping import MAPPING_FILE, MappingError, mapping_from_yaml
    from nodes.settings import NodeSettings
    from schemas.gazetteer import Gazetteer
    from schemas.registry import SchemaRegistry

    settings = NodeSettings.load(Path(directory))
    path = settings.directory / MAPPING_FILE
    if not path.is_file():
        fail(f"{path} does not exist; write the mapping there (see docs/dhis2.md)")
    gazetteer = Gazetteer.from_csv_text(settings.gazetteer_file.read_text(encoding="utf-8"))
    try:
        mapping = mapping_from_yaml(path.read_text("utf-8"), SchemaRegistry(), gazetteer)
    except MappingError as exc:
        errors.print(f"[bold red]{path} has {len(exc.problems)} mistake(s):[/]", highlight=False)
        for problem in exc.problems:
            errors.print(f"  - {problem}", highlight=False, markup=False)
        raise typer.Exit(1) from None
    console.print(f"{path} is valid: {mapping.summary()}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.add_typer(dhis2_app, name="dhis2")
