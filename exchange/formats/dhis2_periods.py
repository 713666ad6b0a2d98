"""DHIS2 period identifiers placed in the node's epi weeks, or refused with the reason.

DHIS2's ``Weekly`` periods (``2026W5``) are ISO 8601 weeks, Monday to Sunday; its
``WeeklySunday`` periods (``2026SunW5``) start on Sunday with week 1 holding 4 January,
which is the MMWR rule (``tests/test_dhis2_periods.py`` checks that against ``epiweeks``
for every year a week may name). So an ISO node takes ``Weekly`` and an MMWR node takes
``WeeklySunday``; every other period type (a day, a month, a quarter, a year...) spans a
different stretch of time than an epi week, and a count of it cannot be placed in one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from schemas.periods import InvalidWeekError, WeekSystem, parse_week

#: The DHIS2 period types this module can name, matched in this order.
_TYPES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("weekly", re.compile(r"^(\d{4})W(\d{1,2})$")),
    ("weekly starting Sunday", re.compile(r"^(\d{4})SunW(\d{1,2})$")),
    ("weekly starting Wednesday", re.compile(r"^\d{4}WedW\d{1,2}$")),
    ("weekly starting Thursday", re.compile(r"^\d{4}ThuW\d{1,2}$")),
    ("weekly starting Saturday", re.compile(r"^\d{4}SatW\d{1,2}$")),
    ("bi-weekly", re.compile(r"^\d{4}BiW\d{1,2}$")),
    ("daily", re.compile(r"^\d{8}$")),
    ("monthly", re.compile(r"^\d{6}$")),
    ("bi-monthly", re.compile(r"^\d{6}B$")),
    ("quarterly", re.compile(r"^\d{4}Q[1-4]$")),
    ("six-monthly", re.compile(r"^\d{4}(S[12]|AprilS[12]|NovS[12])$")),
    ("yearly", re.compile(r"^\d{4}$")),
    ("financial year", re.compile(r"^\d{4}(April|July|Oct|Nov)$")),
)

#: The DHIS2 period type whose weeks are the node's epi weeks.
WEEKLY_TYPE: dict[WeekSystem, str] = {"iso": "weekly", "mmwr": "weekly starting Sunday"}
_EXAMPLE: dict[WeekSystem, str] = {"iso": "2026W5", "mmwr": "2026SunW5"}


@dataclass(frozen=True)
class PeriodRefusal:
    """Why a period cannot be placed: ``known_type`` tells E7632 (a type the schema cannot
    hold) from E7611 (not a DHIS2 period at all)."""

    reason: str
    known_type: bool


def period_type(period: str) -> str | None:
    return next((name for name, pattern in _TYPES if pattern.match(period)), None)


def place_period(period: str, system: WeekSystem, schema_id: str) -> str | PeriodRefusal:
    """The canonical epi week (``2026-W05``) of a DHIS2 period, or why there is none."""
    kind = period_type(period)
    wanted = WEEKLY_TYPE[system]
    holds = (
        f"{schema_id} holds {system.upper()} epi weeks, so it takes DHIS2 {wanted} periods "
        f"such as {_EXAMPLE[system]}"
    )
    if kind is None:
        return PeriodRefusal(f"Period `{period}` is not a DHIS2 period identifier; {holds}", False)
    if kind != wanted:
        return PeriodRefusal(
            f"Period `{period}` is {kind}; {holds}, and a count for a {kind} period cannot be "
            "placed in one epi week",
            True,
        )
    digits = period.replace("SunW", "W")
    try:
        return parse_week(digits[:4] + "-W" + digits[5:], system)
    except InvalidWeekError as exc:
        return PeriodRefusal(f"Period `{period}` is not a week: {exc}", False)
