"""Concurrent corrections of the same cells, on SQLite and PostgreSQL: exactly one report's
rows stay current per cell, and every acknowledged report is stored whole.

The reports alternate between districts and their province, so concurrent pushes also
supersede across levels (a province row and its districts' rows must never both count).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest
from sqlalchemy import func, select

from nodes import reports
from nodes.node import Node
from nodes.tables import cell_tables
from nodes.tables import reports as reports_table
from schemas.validation import from_json_rows
from tests.release_support import NOW, agency, weekly


class Pushed(NamedTuple):
    thread: int
    number: int
    stored: reports.StoredReport


def week_stated(weeks: range, week: str) -> bool:
    return int(week[-2:]) in weeks


THREADS = 8
PUSHES = 6
WEEKS = range(1, 4)


def same_weeks(thread: int, number: int) -> range:
    return WEEKS


def some_reports_span_a_year(thread: int, number: int) -> range:
    """Reports of 40 weeks (PostgreSQL then locks the whole schema) beside reports of 3."""
    return range(1, 41) if thread % 2 else range(1 + number % 3, 4 + number % 3)


@pytest.mark.parametrize("weeks_of", [same_weeks, some_reports_span_a_year])
def test_concurrent_corrections_leave_one_current_row_per_cell(
    node: Node, weeks_of: Callable[[int, int], range]
) -> None:
    def report_rows(thread: int, number: int) -> list[dict[str, Any]]:
        """The level alternates between a province and its districts."""
        areas = ("XA-P1",) if (thread + number) % 2 else ("XA-P1-D1", "XA-P1-D2", "XA-P1-D3")
        return weekly(areas, weeks_of(thread, number), cases=thread * 100 + number)

    token = agency(node)
    schema = node.registry.get("weekly_epi@1")
    acknowledged: list[reports.StoredReport] = []
    pushed: list[Pushed] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(THREADS)

    def pusher(thread: int) -> None:
        start.wait()
        for number in range(PUSHES):
            batch = from_json_rows(schema, report_rows(thread, number), node.validation)
            try:
                stored = reports.store(
                    node.engine, batch=batch, token=token, idempotency_key=None, now=NOW
                )
            except BaseException as error:  # reported below, with the thread's context lost
                with lock:
                    errors.append(error)
                return
            with lock:
                acknowledged.append(stored)
                pushed.append(Pushed(thread, number, stored))

    threads = [threading.Thread(target=pusher, args=(t,)) for t in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(acknowledged) == THREADS * PUSHES

    table = cell_tables["weekly_epi@1"]
    with node.engine.connect() as conn:
        stored_rows: dict[int, int] = dict(
            conn.execute(select(table.c.report_id, func.count()).group_by(table.c.report_id)).all()
        )
        stored_reports = set(conn.execute(select(reports_table.c.id)).scalars())
        current = conn.execute(
            select(table.c.report_id, table.c.area, table.c.week).where(
                table.c.superseded_by.is_(None)
            )
        ).all()
        superseded = conn.execute(
            select(func.coalesce(func.sum(reports_table.c.superseded_rows), 0))
        ).scalar_one()
        backwards = conn.execute(
            select(func.count())
            .select_from(table)
            .where(table.c.superseded_by <= table.c.report_id)
        ).scalar_one()

    for report in acknowledged:  # every acknowledged report is there, whole
        assert report.id in stored_reports
        assert stored_rows[report.id] == report.rows
    # One report's rows are current, and it is the last one stored: no cell counts twice,
    # and no province row is current beside its districts' rows.
    # Per week, one report's rows are current, and it is the last one stored that states the
    # week: no cell counts twice, and no province row is current beside its districts' rows.
    states = {(r.thread, r.number): r.stored for r in pushed}
    current_by_week: dict[str, set[int]] = {}
    for row in current:
        current_by_week.setdefault(row.week, set()).add(row.report_id)
    for week in {f"2026-W{w:02d}" for t, n in states for w in weeks_of(t, n)}:
        latest = max(r.id for (t, n), r in states.items() if week_stated(weeks_of(t, n), week))
        assert current_by_week.get(week) == {latest}, week
    assert len(current) == len({(r.area, r.week) for r in current})
    # Every row but the current ones was superseded exactly once, by a later report.
    assert superseded == sum(stored_rows.values()) - len(current)
    assert backwards == 0
