"""``exchange report after-action``: what a node shared, how fast, what it refused and what
went wrong, read from its audit log after the log verified (`nodes.reviews.after_action`).

A log that does not verify gets no review: the command says why and writes nothing. JSON
and Markdown go to standard output unless ``--out`` names a file; HTML, a standalone page
with charts, needs ``--out`` (a page printed to a terminal helps nobody).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from exchange.cli.common import errors, fail, utcnow

if TYPE_CHECKING:
    from nodes.node import Node


class ReviewFormat(StrEnum):
    html = "html"
    json = "json"
    md = "md"


class ReviewLanguage(StrEnum):
    en = "en"
    fr = "fr"
    es = "es"
    ar = "ar"


def after_action(
    directories: Annotated[
        list[Path],
        typer.Argument(
            help="The node directory; several for one review of a federation (an exercise)",
            metavar="DIR",
        ),
    ],
    start: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="Start of the window (UTC): 2026-03-16 or 2026-03-16T08:00; "
            "default: the log's first entry",
        ),
    ] = None,
    end: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="End of the window, excluded (a date alone: that whole day is "
            "included); default: now",
        ),
    ] = None,
    fmt: Annotated[ReviewFormat, typer.Option("--format", help="html, json or md")] = (
        ReviewFormat.json
    ),
    language: Annotated[
        ReviewLanguage, typer.Option(help="Language of an html or md review")
    ] = ReviewLanguage.en,
    out: Annotated[
        Path | None,
        typer.Option(help="Where to write the review (required for html; default: stdout)"),
    ] = None,
) -> None:
    """Write the after-action review of the node's verified audit log (of several nodes':
    one review of the federation)."""
    from exchange.ui.after_action import render
    from nodes.audit.errors import LogIntegrityError
    from nodes.audit.verifier import VerificationError
    from nodes.reviews import after_action as review_of

    if fmt is ReviewFormat.html and out is None:
        fail("--format html writes a standalone page: give --out FILE (for example review.html)", 2)
    now = utcnow()
    begin = None if start is None else parse_moment(start, "--from", end=False)
    finish = now if end is None else parse_moment(end, "--to", end=True)
    if begin is not None and begin >= finish:
        fail(f"the window is empty: --from {start} is not before --to {end or 'now'}", 2)
    with ExitStack() as stack:
        opened = [stack.enter_context(_opened(directory)) for directory in directories]
        try:
            review = review_of.for_nodes(opened, start=begin, end=finish, now=now)
        except VerificationError as exc:
            _refuse(exc.kind, exc)
        except LogIntegrityError as exc:
            _refuse("integrity", exc)
    text = render(review, fmt=fmt.value, language=language.value)
    if out is None:
        print(text, end="")
        return
    partial = out.with_name(out.name + ".partial")
    with partial.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    partial.replace(out)
    errors.print(
        f"Wrote the after-action review of {review.start} to {review.end} to {out}",
        highlight=False,
    )


def parse_moment(text: str, option: str, *, end: bool) -> dt.datetime:
    """A date or an ISO 8601 time, in UTC unless it names its zone. A date given as the end
    of the window includes that day."""
    try:
        if len(text.strip()) == 10:
            day = dt.date.fromisoformat(text.strip())
            moment = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
            return moment + dt.timedelta(days=1) if end else moment
        parsed = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        fail(f"{option} {text!r} is not a date (2026-03-16) or a time (2026-03-16T08:00)", 2)
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)


def _refuse(kind: str, exc: Exception) -> NoReturn:
    print(f"The audit log does not verify: [{kind}] {exc}; no report was written.")
    raise typer.Exit(1)


@contextmanager
def _opened(directory: Path) -> Iterator[Node]:
    """`exchange.cli.common.open_node`, except that a node refusing to open on a damaged log
    is refused in the words of a log that does not verify."""
    from nodes.audit.errors import AuditError, LogIntegrityError
    from nodes.node import Node
    from nodes.settings import NodeSettings
    from schemas.errors import ExchangeError

    try:
        node = Node.open(NodeSettings.load(directory))
    except LogIntegrityError as exc:
        _refuse("integrity", exc)
    except (FileNotFoundError, ValueError, AuditError) as exc:
        fail(str(exc))
    try:
        yield node
    except ExchangeError as exc:
        fail(str(exc))
    finally:
        node.close()
