"""After-action reviews of an exercise: one for every node it ran, one for the federation.

Run once the servers have stopped (the runner's ``after`` hook), while the node directories
still exist. Each review is read from that node's verified audit log
(`nodes.reviews.after_action`); a log that does not verify gets a file saying so instead of
a review, and the exercise fails, because a rehearsal whose record cannot be trusted has
not shown what it was meant to.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from exchange.ui.after_action import render
from nodes.audit.errors import AuditError
from nodes.audit.verifier import VerificationError
from nodes.node import Node
from nodes.reviews import after_action
from nodes.settings import NodeSettings

FOLDER = "after-action"


class ReviewFailedError(RuntimeError):
    """A node's log did not verify, so its review could not be written."""


def write(out_dir: Path, node_dirs: list[Path]) -> list[Path]:
    """Write ``after-action/<NODE>.html`` and ``.json`` per node, and ``federation.*``;
    return the files written. Raises ReviewFailedError naming every log that did not verify
    (the other reviews are still written)."""
    folder = out_dir / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    written: list[Path] = []
    failed: list[str] = []
    with ExitStack() as stack:
        opened: list[Node] = []
        for directory in node_dirs:
            try:  # a node refuses to open on a damaged log, as its review would
                node = stack.enter_context(_opened(directory))
                review = after_action.for_node(node, start=None, end=now, now=now)
            except (VerificationError, AuditError) as exc:
                failed.append(f"{directory.name}: {exc}")
                continue
            opened.append(node)
            written += _files(folder, node.settings.node_id, review)
        if not failed:
            review = after_action.for_nodes(opened, start=None, end=now, now=now)
            written += _files(folder, "federation", review)
    if failed:
        raise ReviewFailedError("; ".join(failed))
    return written


def _files(folder: Path, name: str, review: after_action.AfterAction) -> list[Path]:
    html, data = folder / f"{name}.html", folder / f"{name}.json"
    html.write_text(render(review, fmt="html", language="en"), encoding="utf-8")
    data.write_text(render(review, fmt="json", language="en"), encoding="utf-8")
    return [html, data]


@contextmanager
def _opened(directory: Path) -> Iterator[Node]:
    node = Node.open(NodeSettings.load(directory))
    try:
        yield node
    finally:
        node.close()
