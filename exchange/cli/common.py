"""What every command shares: opening a node directory, printing errors the same way.

Cheap to import: ``exchange --help`` loads every command module, so the node (database,
policy engine) is imported only when a command opens one. tests/test_cli_startup.py checks.
"""

from __future__ import annotations

import datetime as dt
import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console

if TYPE_CHECKING:
    from nodes.node import Node

console = Console()
errors = Console(stderr=True, soft_wrap=True)

NodeDir = Annotated[Path, typer.Argument(help="The node directory (made by 'exchange init')")]


def fail(message: str, code: int = 1) -> NoReturn:
    errors.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def operator() -> str:
    """The audit log's actor for a CLI command: ``operator:<OS account>``.

    Not authenticated: whoever runs the CLI on the node's machine owns the node anyway; the
    name tells an auditor which account did it.
    """
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, e.g. an arbitrary container uid
        user = "unknown"
    return "operator:" + "".join(c if c.isprintable() else "?" for c in user)[:64]


@contextmanager
def open_node(directory: Path) -> Iterator[Node]:
    """Open a node for one command; domain errors become one red line, not a traceback."""
    from nodes.audit.errors import AuditError
    from nodes.node import Node
    from nodes.settings import NodeSettings
    from schemas.errors import ExchangeError

    try:
        settings = NodeSettings.load(directory)
        node = Node.open(settings)
    except (FileNotFoundError, ValueError, AuditError) as exc:
        fail(str(exc))
    try:
        yield node
    except ExchangeError as exc:
        fail(str(exc))
    finally:
        node.close()
