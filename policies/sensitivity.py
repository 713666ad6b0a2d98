"""How much one person can change a release: the ``d_in`` of each measure's mechanism.

A schema's contribution bound is the most one person adds to one stored cell. We assume,
as the standard schemas are defined, that a person is in at most one stored cell per week
(one area, one age band, one sex, one outcome in a given week), and appears in at most
``weeks_per_person`` weeks (a schema setting of the policy; unset means any number, i.e.
every week of the range). So over a range of W weeks one person touches at most
``k = min(weeks_per_person, W)`` stored cells, each by at most ``bound``:

* L1 (Laplace): ``bound * k``, however the weeks are merged into released cells.
* L2 (Gaussian): ``bound * sqrt(sum of c_j**2)`` where ``c_j`` is how many of the person's
  weeks fall into released period ``j``; it is largest when the k weeks fill the longest
  periods first (weeks -> all 1s; months -> up to 4 or 5 per cell; no week grouping -> one
  cell). Rounded up, since OpenDP's integer L2 metric takes an integer bound.
"""

from __future__ import annotations

import math
from collections import Counter

from policies.privacy import Mechanism
from policies.query import EffectiveQuery
from schemas.model import FieldType, ReportSchema
from schemas.periods import WeekSystem, month_of_week, weeks_between


def _period_lengths(
    effective: EffectiveQuery, schema: ReportSchema, system: WeekSystem
) -> list[int]:
    """How many stored weeks each released period holds, longest first."""
    weeks = weeks_between(effective.since, effective.until, system)
    week_dimension = next(
        (d for d in effective.dimensions if schema.dimension_type(d) == FieldType.WEEK), None
    )
    if week_dimension is None:
        return [len(weeks)]
    if effective.granularity(week_dimension) == "month":
        return sorted(Counter(month_of_week(w, system) for w in weeks).values(), reverse=True)
    return [1] * len(weeks)


def touched_weeks(
    effective: EffectiveQuery,
    schema: ReportSchema,
    weeks_per_person: int | None,
    system: WeekSystem,
) -> list[int]:
    """How many of one person's weeks can fall in each released period (worst case)."""
    remaining = sum(_period_lengths(effective, schema, system))
    if weeks_per_person is not None:
        remaining = min(remaining, weeks_per_person)
    counts: list[int] = []
    for length in _period_lengths(effective, schema, system):
        if remaining == 0:
            break
        take = min(length, remaining)
        counts.append(take)
        remaining -= take
    return counts


def _ceil_sqrt(value: int) -> int:
    root = math.isqrt(value)
    return root if root * root == value else root + 1


def sensitivities(
    schema: ReportSchema,
    effective: EffectiveQuery,
    weeks_per_person: int | None,
    system: WeekSystem,
    mechanism: Mechanism,
) -> dict[str, int]:
    """``d_in`` per measure, in the order of the effective query."""
    counts = touched_weeks(effective, schema, weeks_per_person, system)
    out: dict[str, int] = {}
    for name in effective.measures:
        bound = schema.measure_by_name[name].contribution_bound
        if mechanism == "laplace":
            out[name] = bound * sum(counts)
        else:
            out[name] = _ceil_sqrt(bound * bound * sum(c * c for c in counts))
    return out
