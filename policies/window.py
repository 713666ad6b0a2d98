"""The week range of a release: defaults, the embargo, and alignment to whole months.

Why alignment matters: if a partner allowed only monthly totals could ask for "January up
to week 3" and then "January up to week 4", the difference would be week 4 alone. So a
monthly release always covers whole months: the start moves back to the first week of its
month, and the end moves forward to the last week of its month if the embargo allows, or
else back to the last whole month before it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from schemas.periods import WeekSystem, month_of_week, week_of, week_start

DEFAULT_WEEKS = 52  # a request without ``since`` covers the year of weeks ending at ``until``


def shift(week: str, weeks: int, system: WeekSystem) -> str:
    return week_of(week_start(week, system) + dt.timedelta(days=7 * weeks), system)


def last_releasable_week(today: dt.date, embargo_days: int, system: WeekSystem) -> str:
    """The last week that ends on or before ``today - embargo_days``: nothing newer leaves."""
    cutoff = today - dt.timedelta(days=embargo_days)
    return week_of(cutoff - dt.timedelta(days=6), system)


@dataclass(frozen=True)
class Window:
    since: str
    until: str
    notes: tuple[str, ...]  # what was changed, in words, for the decision's reasons

    @property
    def empty(self) -> bool:
        return self.since > self.until  # canonical YYYY-Www sorts chronologically


def window(
    *,
    since: str | None,
    until: str | None,
    last_allowed: str,
    monthly: bool,
    embargo_rule: str,
    system: WeekSystem,
) -> Window:
    """Fill in, clamp and align a range of canonical weeks. ``embargo_rule`` names the rule
    (e.g. "agreement XB-epi: nothing newer than 14 days") for the notes."""
    notes: list[str] = []
    end = until or last_allowed
    if end > last_allowed:
        notes.append(f"{embargo_rule}, so the release ends with week {last_allowed}")
        end = last_allowed
    start = since or shift(end, -(DEFAULT_WEEKS - 1), system)
    if monthly:
        aligned_start = _month_start(start, system)
        aligned_end = _month_end(end, last_allowed, system)
        if (aligned_start, aligned_end) != (start, end):
            notes.append(
                f"monthly totals cover whole months only, so the range is {aligned_start} "
                f"to {aligned_end}"
            )
        start, end = aligned_start, aligned_end
    return Window(since=start, until=end, notes=tuple(notes))


def _month_start(week: str, system: WeekSystem) -> str:
    month = month_of_week(week, system)
    while month_of_week(shift(week, -1, system), system) == month:
        week = shift(week, -1, system)
    return week


def _month_end(week: str, last_allowed: str, system: WeekSystem) -> str:
    month = month_of_week(week, system)
    end = week
    while month_of_week(shift(end, 1, system), system) == month:
        end = shift(end, 1, system)
    if end <= last_allowed:
        return end
    # The month is not over before the embargo: stop at the end of the month before it.
    return shift(_month_start(week, system), -1, system)
