"""Synthetic outbreaks and sharing policies for the three fictional nations of the demo.

Each district gets its own epidemic wave: weekly incidence is the difference of a logistic
curve (the shape of an SIR epidemic's cumulative cases), with a district-specific start,
speed and final size, then Poisson noise, split by sex and age band with plausible
weights, and deaths, admissions and tests derived from cases. Seeded, so every run tells
the same story; nothing here is real data.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass

import numpy as np

from schemas.gazetteer import Gazetteer
from schemas.periods import week_of

WEEKS = 16
AGE_WEIGHTS = {"0-4": 0.10, "5-14": 0.16, "15-24": 0.18, "25-44": 0.30, "45-64": 0.17, "65+": 0.09}
SEX_WEIGHTS = {"female": 0.52, "male": 0.48}
HEADER = ("area", "week", "age_band", "sex", "cases", "deaths", "admissions", "tests")


@dataclass(frozen=True)
class Nation:
    id: str
    name: str
    seed: int
    close_partner: str  # sees admin level 1 weekly counts
    far_partner: str  # sees national weekly totals only


NATIONS = (
    Nation("XA", "Republic of XA", 11, close_partner="XB", far_partner="XC"),
    Nation("XB", "Federation of XB", 22, close_partner="XC", far_partner="XA"),
    Nation("XC", "Kingdom of XC", 33, close_partner="XA", far_partner="XB"),
)


def outbreak_weeks(today: dt.date) -> list[str]:
    """The ISO weeks of the outbreak: the 16 weeks before the current one."""
    return [week_of(today - dt.timedelta(weeks=back), "iso") for back in range(WEEKS, 0, -1)]


def outbreak_rows(nation: Nation, gazetteer: Gazetteer, today: dt.date) -> list[dict[str, object]]:
    """Weekly counts per district, week, age band and sex for ``nation``'s outbreak."""
    rng = np.random.default_rng(nation.seed)
    week_labels = outbreak_weeks(today)
    rows: list[dict[str, object]] = []
    districts = sorted(a.code for a in gazetteer.areas if a.level == 2)
    weeks = np.arange(WEEKS + 1, dtype=float)
    for district in districts:
        population = rng.integers(40_000, 250_000)
        attack_rate = rng.uniform(0.004, 0.03)
        midpoint = rng.uniform(4.0, 12.0)  # the wave peaks in a different week per district
        growth = rng.uniform(0.6, 1.3)
        cumulative = population * attack_rate / (1 + np.exp(-growth * (weeks - midpoint)))
        weekly = np.diff(cumulative)
        for offset, expected in enumerate(weekly):
            week = week_labels[offset]
            for age, age_weight in AGE_WEIGHTS.items():
                for sex, sex_weight in SEX_WEIGHTS.items():
                    cases = int(rng.poisson(expected * age_weight * sex_weight))
                    severe = 0.25 if age == "65+" else 0.05
                    admissions = int(rng.binomial(cases, severe))
                    deaths = int(rng.binomial(admissions, 0.15))
                    tests = cases * 3 + int(rng.poisson(4))
                    rows.append(
                        {
                            "area": district,
                            "week": week,
                            "age_band": age,
                            "sex": sex,
                            "cases": cases,
                            "deaths": deaths,
                            "admissions": admissions,
                            "tests": tests,
                        }
                    )
    return rows


def as_csv(rows: list[dict[str, object]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=HEADER, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def policy_yaml(nation: Nation) -> str:
    """The nation's sharing policy: a red line, a close partner, a far partner."""
    return f"""\
# Sharing policy of {nation.name} (fictional; made by 'exchange demo').
version: 1
node: {nation.id}
red_lines:
  - id: no-deaths
    reason: Deaths are published only in the Ministry of Health's own bulletin.
    measures: [deaths]
schemas:
  weekly_epi@1:
    global_budget: {{epsilon: 20, period: total}}
    weeks_per_person: 2               # one person is ill, and counted, in at most 2 weeks
agreements:
  - id: {nation.id.lower()}-{nation.close_partner.lower()}-regional
    partners: [{nation.close_partner}]
    schema: weekly_epi@1
    measures: [cases, admissions]
    dimensions:
      area: {{level: 1}}
      week: {{period: week}}
    embargo_days: 0
    purposes: [outbreak_response]
    valid_from: 2025-01-01
    valid_until: 2030-12-31
    privacy: {{mechanism: laplace, epsilon: 1.0}}
    budget: {{epsilon: 8, period: total}}
    escalation:                       # in an emergency, two operators may allow
      max_hours: 72                   # districts for up to three days
      dimensions:
        area: {{level: 2}}
  - id: {nation.id.lower()}-{nation.far_partner.lower()}-national
    partners: [{nation.far_partner}]
    schema: weekly_epi@1
    measures: [cases]
    dimensions:
      area: {{level: 0}}
      week: {{period: week}}
    embargo_days: 0
    purposes: [outbreak_response]
    valid_from: 2025-01-01
    valid_until: 2030-12-31
    privacy: {{mechanism: laplace, epsilon: 0.5}}
    budget: {{epsilon: 4, period: total}}
"""
