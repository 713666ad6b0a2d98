"""Privacy budget arithmetic in integer micro-epsilon.

Floats do not add up exactly (0.1 + 0.2 != 0.3), and a ledger that drifts by one ulp per
release either overspends or refuses a release it could pay for. So every amount the
ledger stores is an integer number of micro-epsilon (1 ε = 1,000,000 µε):

* a **cost** (what OpenDP's privacy map says a release spends) is rounded **up**, so the
  ledger never charges less than the mechanism spends;
* a **cap** (what a policy author wrote, e.g. ``5.0``) is read as the decimal the author
  typed and rounded **down**, so the ledger never allows more than was written.
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import ROUND_FLOOR, Decimal
from fractions import Fraction
from typing import Literal

MICRO = 1_000_000

BudgetPeriod = Literal["total", "year", "month"]


def cost_micro(epsilon: float) -> int:
    """A privacy loss as integer µε, rounded up from the float's exact binary value."""
    if not math.isfinite(epsilon) or epsilon < 0:
        raise ValueError(f"a privacy cost must be a finite, non-negative epsilon, not {epsilon}")
    return math.ceil(Fraction(epsilon) * MICRO)


def cap_micro(epsilon: float) -> int:
    """A budget cap as integer µε: the decimal the author wrote, rounded down."""
    if not math.isfinite(epsilon) or epsilon < 0:
        raise ValueError(f"a budget must be a finite, non-negative epsilon, not {epsilon}")
    return int((Decimal(repr(epsilon)) * MICRO).to_integral_value(rounding=ROUND_FLOOR))


def epsilon(micro: int) -> float:
    """µε back to ε, for display and JSON (never for arithmetic)."""
    return micro / MICRO


def show(micro: int) -> str:
    """``1250000`` -> ``1.25 ε``: what a person reads."""
    text = f"{Decimal(micro) / MICRO:f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"{text} ε"


def period_key(period: BudgetPeriod, now: dt.datetime) -> str:
    """The ledger account a charge at ``now`` falls in: ``total``, ``2026`` or ``2026-03``.

    A yearly or monthly budget starts afresh each period; ``total`` never does.
    """
    if now.tzinfo is None:
        raise ValueError("naive datetime; budgets are kept in UTC")
    now = now.astimezone(dt.UTC)
    if period == "total":
        return "total"
    if period == "year":
        return f"{now.year:04d}"
    return f"{now.year:04d}-{now.month:02d}"
