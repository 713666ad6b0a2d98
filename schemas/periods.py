"""Epidemiological weeks in ISO 8601 or MMWR (CDC) numbering, via the ``epiweeks`` package.

The canonical text form is ``YYYY-Www`` (``2026-W05``) in the node's numbering system; we
also read DHIS2's ``2026W5``. The two systems disagree near New Year (1 January 2026 is
MMWR 2025-W53 but ISO 2026-W01), so a node fixes one system in its settings.
"""

from __future__ import annotations

import datetime as dt
import re
from functools import lru_cache
from typing import Literal

from epiweeks import Week, Year

WeekSystem = Literal["iso", "mmwr"]

FIRST_YEAR, LAST_YEAR = 1900, 2200  # the years a week may name
MAX_WEEKS = 53 * (LAST_YEAR - FIRST_YEAR + 1)  # at least every week of those years: 15,953
_WEEK = re.compile(r"^(\d{4})-?W(\d{1,2})$")


class InvalidWeekError(ValueError):
    """A text that is not an epi week of the node's numbering system."""


def _library_system(system: WeekSystem) -> str:
    return "cdc" if system == "mmwr" else "iso"


@lru_cache(maxsize=4096)
def parse_week(text: str, system: WeekSystem) -> str:
    """Return the canonical ``YYYY-Www`` for ``text``, or raise with the reason.

    Cached because a report repeats the same few weeks over thousands of rows.
    """
    match = _WEEK.match(text)
    if match is None:
        raise InvalidWeekError(f"'{text}' is not an epi week; write it as YYYY-Www, e.g. 2026-W05")
    year, week = int(match[1]), int(match[2])
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise InvalidWeekError(f"year {year} is out of range")
    total = weeks_in_year(year, system)
    if not 1 <= week <= total:
        raise InvalidWeekError(
            f"{system.upper()} year {year} has {total} weeks, so week {week} does not exist"
        )
    return f"{year:04d}-W{week:02d}"


@lru_cache(maxsize=512)
def weeks_in_year(year: int, system: WeekSystem) -> int:
    return int(Year(year, system=_library_system(system)).totalweeks())


def week_of(day: dt.date, system: WeekSystem) -> str:
    """The canonical epi week containing ``day``."""
    week = Week.fromdate(day, system=_library_system(system))
    return f"{week.year:04d}-W{week.week:02d}"


def week_start(week: str, system: WeekSystem) -> dt.date:
    year, number = int(week[:4]), int(week[6:])
    start: dt.date = Week(year, number, system=_library_system(system)).startdate()
    return start


def month_of_week(week: str, system: WeekSystem) -> str:
    """The calendar month (``YYYY-MM``) a week belongs to: the month of its fourth day.

    Both ISO (Monday start) and MMWR (Sunday start) weeks are assigned by their middle day,
    so every week falls in exactly one month.
    """
    middle = week_start(week, system) + dt.timedelta(days=3)
    return f"{middle.year:04d}-{middle.month:02d}"


def weeks_between(first: str, last: str, system: WeekSystem) -> list[str]:
    """Every week from ``first`` to ``last`` inclusive: the public key set of a period range."""
    out: list[str] = []
    day = week_start(first, system)
    end = week_start(last, system)
    while day <= end:
        out.append(week_of(day, system))
        day += dt.timedelta(days=7)
    return out
