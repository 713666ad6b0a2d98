"""A synthetic outbreak that crosses borders, decided by the seed alone.

The nations sit on a line in an order drawn from the seed; the wave starts in the first and
reaches each next one a few weeks later, so every node's data shows the same epidemic
arriving at a different time. Within a nation each district's wave has its own size and
peak around the nation's arrival week (a logistic curve's increments, as in the demo), then
Poisson noise split by age band and sex. Only the week *labels* follow today's date; the
counts, and their digest, depend on the seed and the week's index alone.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass

import numpy as np

from exchange.demo.data import AGE_WEIGHTS, SEX_WEIGHTS
from schemas.gazetteer import Gazetteer
from schemas.periods import week_of


@dataclass(frozen=True)
class Wave:
    """Where the outbreak is in one nation: its place on the line and its arrival week."""

    node_id: str
    order: int
    arrival_week: float


def waves(node_ids: tuple[str, ...], seed: int, weeks: int) -> list[Wave]:
    """The order the wave crosses the nations in, and when it arrives in each."""
    rng = np.random.default_rng([seed, 1])
    order = [node_ids[int(i)] for i in rng.permutation(len(node_ids))]
    spread = max(1.0, (weeks * 0.6) / max(1, len(node_ids) - 1))
    found: list[Wave] = []
    arrival = float(rng.uniform(1.0, 3.0))
    for position, node_id in enumerate(order):
        found.append(Wave(node_id, position, round(arrival, 3)))
        arrival += spread * float(rng.uniform(0.6, 1.2))
    return sorted(found, key=lambda w: w.node_id)


def week_labels(today: dt.date, weeks: int) -> list[str]:
    """The ISO weeks of the outbreak: the ``weeks`` weeks before the current one."""
    return [week_of(today - dt.timedelta(weeks=back), "iso") for back in range(weeks, 0, -1)]


def rows_for(
    wave: Wave, gazetteer: Gazetteer, seed: int, weeks: int, today: dt.date
) -> list[dict[str, object]]:
    """Weekly counts per district, week, age band and sex in ``wave``'s nation."""
    rng = np.random.default_rng([seed, 2, wave.order])
    labels = week_labels(today, weeks)
    points = np.arange(weeks + 1, dtype=float)
    rows: list[dict[str, object]] = []
    for district in sorted(a.code for a in gazetteer.areas if a.level == 2):
        size = float(rng.integers(40_000, 200_000)) * float(rng.uniform(0.004, 0.02))
        midpoint = wave.arrival_week + float(rng.uniform(0.5, 3.0))
        growth = float(rng.uniform(0.7, 1.4))
        weekly = np.diff(size / (1 + np.exp(-growth * (points - midpoint))))
        for index, expected in enumerate(weekly):
            for age, age_weight in AGE_WEIGHTS.items():
                for sex, sex_weight in SEX_WEIGHTS.items():
                    cases = int(rng.poisson(expected * age_weight * sex_weight))
                    admissions = int(rng.binomial(cases, 0.25 if age == "65+" else 0.05))
                    rows.append(
                        {
                            "area": district,
                            "week": labels[index],
                            "age_band": age,
                            "sex": sex,
                            "cases": cases,
                            "deaths": int(rng.binomial(admissions, 0.15)),
                            "admissions": admissions,
                            "tests": cases * 3 + int(rng.poisson(4)),
                        }
                    )
    return rows


def digest(rows: list[dict[str, object]], labels: list[str]) -> str:
    """SHA-256 of the counts with each week written as its index: equal for equal seeds on
    any date."""
    index = {label: i for i, label in enumerate(labels)}
    canonical = [{**row, "week": index.get(str(row["week"]), -1)} for row in rows]
    data = json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(data).hexdigest()
