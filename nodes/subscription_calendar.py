"""The periods of a standing subscription: one epi week, or the weeks of a calendar month.

A period is named ``2026-W05`` (cadence ``week``) or ``2026-03`` (cadence ``month``; its
weeks are those whose middle day falls in the month, as ``schemas.periods`` assigns them).
A period is due once the embargo lets its last week out. Pure: no I/O.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Final, Literal

from policies.window import last_releasable_week, shift
from schemas.periods import WeekSystem, month_of_week, parse_week, week_of

Cadence = Literal["week", "month"]
CADENCES: Final = ("week", "month")
#: The most periods listed at once: ten years of weeks.
MAX_PERIODS: Final = 530
_MONTH = re.compile(r"^([0-9]{4})-(0[1-9]|1[0-2])$")


def valid(period: str, cadence: Cadence, system: WeekSystem) -> bool:
    if cadence == "month":
        return _MONTH.fullmatch(period) is not None
    try:
        return parse_week(period, system) == period
    except ValueError:
        return False


def period_of(week: str, cadence: Cadence, system: WeekSystem) -> str:
    """The period a canonical week belongs to."""
    return week if cadence == "week" else month_of_week(week, system)


def weeks(period: str, cadence: Cadence, system: WeekSystem) -> tuple[str, str]:
    """The first and last week of ``period``."""
    if cadence == "week":
        return period, period
    year, month = int(period[:4]), int(period[5:])
    first = week_of(dt.date(year, month, 1), system)
    if month_of_week(first, system) != period:
        first = shift(first, 1, system)
    last = first
    while month_of_week(shift(last, 1, system), system) == period:
        last = shift(last, 1, system)
    return first, last


def following(period: str, cadence: Cadence, system: WeekSystem) -> str:
    if cadence == "week":
        return shift(period, 1, system)
    year, month = int(period[:4]), int(period[5:])
    return f"{year + month // 12:04d}-{month % 12 + 1:02d}"


def latest_due(last_allowed: str, cadence: Cadence, system: WeekSystem) -> str:
    """The newest period whose last week is no later than ``last_allowed``."""
    period = period_of(last_allowed, cadence, system)
    if weeks(period, cadence, system)[1] <= last_allowed:
        return period
    return period_of(shift(weeks(period, cadence, system)[0], -1, system), cadence, system)


def due(first: str, last_allowed: str, cadence: Cadence, system: WeekSystem) -> list[str]:
    """Every period from ``first`` whose last week the embargo lets out, oldest first
    (at most ``MAX_PERIODS``)."""
    out: list[str] = []
    period = first
    while len(out) < MAX_PERIODS and weeks(period, cadence, system)[1] <= last_allowed:
        out.append(period)
        period = following(period, cadence, system)
    return out


def last_allowed(today: dt.date, embargo_days: int, system: WeekSystem) -> str:
    return last_releasable_week(today, embargo_days, system)
