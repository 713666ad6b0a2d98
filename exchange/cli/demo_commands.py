"""``exchange demo``: the first command a newcomer runs (three nodes, one machine)."""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path
from typing import Annotated

import typer

from exchange.cli.common import console, fail


def _wait_for_interrupt(_result: object) -> None:
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        console.print("Stopping the three nodes.")


def demo(
    keep_running: Annotated[
        bool, typer.Option(help="Keep the nodes serving, and print URLs and tokens")
    ] = False,
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="Where to create the nodes (kept); default: a temporary one"),
    ] = None,
) -> None:
    """Three fictional nations exchange private outbreak statistics on this machine."""
    from exchange.demo.walkthrough import run

    if directory is not None and directory.exists() and any(directory.iterdir()):
        fail(f"{directory} is not empty; the demo creates its nodes in a new directory")
    chosen = directory or Path(tempfile.mkdtemp(prefix="exchange-demo-"))
    try:
        run(
            chosen,
            console=console,
            keep_running=keep_running,
            wait=_wait_for_interrupt if keep_running else None,
        )
    finally:
        if directory is None:
            shutil.rmtree(chosen, ignore_errors=True)


def demo_setup(
    directory: Annotated[Path, typer.Argument(help="Where to create the three node directories")],
    url: Annotated[
        list[str], typer.Option(help="NODE=URL for each of XA, XB, XC, e.g. XA=http://xa:8000")
    ],
) -> None:
    """Create the demo's three nodes with data, without serving them (for docker compose)."""
    from exchange.demo.cluster import prepare, seed_in_process

    urls = dict(item.split("=", 1) for item in url if "=" in item)
    if sorted(urls) != ["XA", "XB", "XC"]:
        fail("give --url for each of XA, XB and XC, as NODE=URL")
    if (directory / "XA").exists():
        console.print(f"{directory} already holds the demo nodes; nothing to do.")
        return
    for demo_node in prepare(directory, urls):
        rows = seed_in_process(demo_node)
        demo_node.opened.close()
        console.print(f"{demo_node.id}: {rows} rows stored; serves as {demo_node.url}")


def register(app: typer.Typer) -> None:
    app.command()(demo)
    app.command("demo-setup", hidden=True)(demo_setup)
