"""``exchange push``: send a JSON or CSV report file to a node, with a progress bar."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from exchange.cli.common import console, fail

#: exchange.clients.push.DEFAULT_CHUNK_ROWS, spelled here so --help need not import the
#: HTTP client (tests/test_cli_startup.py checks they agree).
DEFAULT_CHUNK_ROWS = 50_000


def _count_rows(path: Path) -> int | None:
    if path.suffix.lower() == ".json":
        return None
    with path.open("rb") as handle:
        return max(sum(1 for _ in handle) - 1, 0)


def push(
    schema_id: Annotated[
        str,
        typer.Argument(
            help="Schema id, e.g. weekly_epi@1 (with --format dhis2: the file; the mapping "
            "names the schema)"
        ),
    ],
    file: Annotated[
        Path | None, typer.Argument(exists=True, dir_okay=False, help="A .csv or .json report")
    ] = None,
    *,
    url: Annotated[str, typer.Option(help="The node's base URL")],
    token: Annotated[
        str, typer.Option(envvar="EXCHANGE_TOKEN", help="Agency token (or EXCHANGE_TOKEN)")
    ],
    chunk_rows: Annotated[
        int, typer.Option(min=1, help="Rows per request; a longer file is sent in parts")
    ] = DEFAULT_CHUNK_ROWS,
    dry_run: Annotated[bool, typer.Option(help="Validate only; store nothing")] = False,
    file_format: Annotated[
        str,
        typer.Option(
            "--format",
            help="'report' (the node's JSON or CSV) or 'dhis2' (a data value set exported "
            "from DHIS2, JSON or CSV, sent to /api/dataValueSets)",
        ),
    ] = "report",
    id_scheme: Annotated[
        str | None, typer.Option(help="With --format dhis2: UID (default) or CODE")
    ] = None,
) -> None:
    """Push a report: the whole file is stored as one report, or nothing.

    A file of more than --chunk-rows rows is sent in parts through an upload session; after
    an interruption, run the same command again: parts the node holds are not sent again.
    """
    if file_format == "dhis2":
        path = file if file is not None else Path(schema_id)
        if not path.is_file():
            fail(f"{path} is not a file; give the data value set exported from DHIS2")
        _push_dhis2(url, token, path, dry_run=dry_run, id_scheme=id_scheme)
        return
    if file_format != "report":
        fail(f"--format {file_format!r} is not known; use 'report' or 'dhis2'")
    if file is None:
        fail("give the schema id and the file: exchange push SCHEMA_ID FILE")
    import httpx2

    from exchange.clients.push import PushError, push_file

    total = _count_rows(file)
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with (
        httpx2.Client(base_url=url, timeout=httpx2.Timeout(120.0, connect=10.0)) as client,
        Progress(*columns, console=console, transient=False) as progress,
    ):
        task = progress.add_task(f"{schema_id} rows", total=total)
        try:
            result = push_file(
                client,
                token=token,
                schema_id=schema_id,
                path=file,
                chunk_rows=chunk_rows,
                dry_run=dry_run,
                on_chunk=lambda rows: progress.advance(task, rows),
            )
        except PushError as exc:
            progress.stop()
            fail(str(exc))
    verb = "would store" if dry_run else "stored"
    if result.replayed:
        console.print(
            f"already stored as report {result.receipt['report_id']} ({result.rows} rows); "
            "nothing new was stored"
        )
        return
    held = f", {result.parts_already_held} already on the node" if result.parts_already_held else ""
    console.print(
        f"{verb} {result.rows} rows as one report in {result.parts} part(s){held}; "
        f"{result.superseded_rows} older rows superseded"
    )


def _push_dhis2(url: str, token: str, path: Path, *, dry_run: bool, id_scheme: str | None) -> None:
    """Send a DHIS2 data value set; print DHIS2's counts and every conflict."""
    import httpx2

    from exchange.clients.push import PushError, push_dhis2

    with httpx2.Client(base_url=url, timeout=httpx2.Timeout(120.0, connect=10.0)) as client:
        try:
            outcome = push_dhis2(
                client, token=token, path=path, dry_run=dry_run, id_scheme=id_scheme
            )
        except PushError as exc:
            fail(str(exc))
    summary = outcome.summary
    counts = summary.get("importCount") or {}
    console.print(
        f"{outcome.message.get('status')}: imported {counts.get('imported', 0)}, "
        f"updated {counts.get('updated', 0)}, ignored {counts.get('ignored', 0)}, "
        f"deleted {counts.get('deleted', 0)}" + (" (dry run)" if dry_run else ""),
        highlight=False,
    )
    console.print(str(summary.get("description", "")), highlight=False, markup=False)
    for conflict in summary.get("conflicts") or []:
        indexes = conflict.get("indexes") or []
        shown = ", ".join(map(str, indexes[:10])) + (" ..." if len(indexes) > 10 else "")
        console.print(
            f"  {conflict.get('errorCode')} {conflict.get('property')} "
            f"{conflict.get('object')!r}: {conflict.get('value')}"
            + (f" (data values {shown})" if shown else ""),
            highlight=False,
            markup=False,
        )
    if not outcome.imported:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(push)
