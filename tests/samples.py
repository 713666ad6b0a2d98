"""Small, valid reports for the fictional node XA (its sample gazetteer)."""

from __future__ import annotations

import csv
import io

WEEKLY_HEADER = ["area", "week", "age_band", "sex", "cases", "deaths", "admissions", "tests"]


def weekly_rows(weeks: range = range(1, 3), cases: int = 5) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for week in weeks:
        for district in ("XA-P1-D1", "XA-P2-D3"):
            for sex in ("female", "male"):
                rows.append(
                    {
                        "area": district,
                        "week": f"2026-W{week:02d}",
                        "age_band": "25-44",
                        "sex": sex,
                        "cases": cases,
                        "deaths": 0,
                        "admissions": 1,
                        "tests": 12,
                    }
                )
    return rows


def as_csv(rows: list[dict[str, object]], header: list[str] = WEEKLY_HEADER) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
