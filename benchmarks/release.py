"""How much does a differentially private release cost beyond the SQL it is built on?

Stores 999,600 rows of ``weekly_epi@1`` (357 districts in 100 provinces x 100 weeks x 7
age bands x 4 sexes, inserted with ``nodes.bulk.insert_rows``), then times, in the same
run, on the same SQLite database:

A. area x week at district level, 28 weeks: 9,996 cells over 280,000 of the rows;
B. area x week at province level (districts rolled up through the gazetteer), 100 weeks:
   10,000 cells over all the rows;

each as a full ``nodes.releases.pipeline.release`` (policy decision, budget reservation, exact
aggregate, one OpenDP Laplace mechanism per measure for ``cases`` and ``deaths``,
post-processing, storage, audit) beside the raw SQL GROUP BY of the same cells, with the
ratio (goal: 1.3x or less), and the cost of a cached repeat (goal: far below the first).

Run: .venv/bin/python benchmarks/release.py   (about 15 seconds)
"""

from __future__ import annotations

import datetime as dt
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from nodes import aggregates, tokens
from nodes.bulk import insert_rows
from nodes.database import writing
from nodes.directory import init_node
from nodes.node import Node
from nodes.releases import pipeline
from nodes.tables import cell_tables, reports
from policies import privacy
from policies.query import ReleaseQuery
from schemas.codelists import AGE_BAND, SEX
from schemas.gazetteer import Area, Gazetteer
from schemas.periods import week_of

NOW = dt.datetime(2026, 1, 15, 12, tzinfo=dt.UTC)
PROVINCES = 100
DISTRICTS = 357
WEEKS = [week_of(dt.date(2024, 1, 3) + dt.timedelta(weeks=i), "iso") for i in range(100)]
ROUNDS = 5
PARTNERS = [f"P{i:02d}" for i in range(ROUNDS)]  # each timed release goes to a fresh partner

POLICY = f"""
version: 1
node: XA
schemas:
  weekly_epi@1:
    global_budget: {{epsilon: 1000, period: total}}
    weeks_per_person: 2
agreements:
  - id: bench
    partners: [{", ".join(PARTNERS)}]
    schema: weekly_epi@1
    measures: [cases, deaths]
    dimensions: {{area: {{level: 2}}, week: {{period: week}}}}
    embargo_days: 0
    purposes: [benchmark]
    valid_from: 2026-01-01
    valid_until: 2026-12-31
    privacy: {{mechanism: laplace, epsilon: 1.0}}
    budget: {{epsilon: 100, period: total}}
    suppress_below: 5
"""


def gazetteer() -> Gazetteer:
    areas = [Area(code="XA", name="XA", level=0)]
    for p in range(PROVINCES):
        areas.append(Area(code=f"XA-P{p:02d}", name=f"Province {p}", level=1, parent="XA"))
    for d in range(DISTRICTS):
        province = f"XA-P{d % PROVINCES:02d}"
        areas.append(
            Area(code=f"{province}-D{d // PROVINCES}", name=f"D{d}", level=2, parent=province)
        )
    return Gazetteer(areas=tuple(areas))


def seed(node: Node) -> int:
    districts = [a.code for a in node.gazetteer.areas if a.level == 2]
    bands, sexes = AGE_BAND.ordered(), SEX.ordered()
    count = len(districts) * len(WEEKS) * len(bands) * len(sexes)
    rng = np.random.default_rng(7)
    cases = rng.poisson(6, count).tolist()
    deaths = rng.poisson(0.3, count).tolist()
    token, _secret = tokens.issue_token(
        node.engine, name="bench", role="agency", schemas=("weekly_epi@1",), now=NOW
    )
    table = cell_tables["weekly_epi@1"]
    with writing(node.engine) as conn:
        report = conn.execute(
            reports.insert()
            .values(
                schema_id="weekly_epi@1",
                token_id=token.id,
                received_at=NOW,
                content_sha256="0" * 64,
                row_count=count,
                superseded_rows=0,
            )
            .returning(reports.c.id)
        ).scalar_one()
        keys = (
            (report, a, w, b, s) for a in districts for w in WEEKS for b in bands for s in sexes
        )
        rows = ((*k, c, d, 0, 0) for k, c, d in zip(keys, cases, deaths, strict=True))
        columns = (
            "report_id",
            "area",
            "week",
            "age_band",
            "sex",
            "cases",
            "deaths",
            "admissions",
            "tests",
        )
        insert_rows(conn, table, columns, rows)
    return count


def median_ms(run: Callable[[], object], rounds: int = ROUNDS) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


PHASES: dict[str, list[float]] = {}


def timed(module: Any, name: str) -> None:
    """Record how long each call of ``module.name`` takes (for the breakdown)."""
    original = getattr(module, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            PHASES.setdefault(name, []).append((time.perf_counter() - start) * 1000)

    setattr(module, name, wrapper)


def raw_ms(node: Node, sql: str, since: str) -> float:
    """The driver's own cursor: no SQLAlchemy row objects."""

    def run() -> None:
        with node.engine.connect() as conn:
            driver = conn.connection.driver_connection
            assert driver is not None
            driver.execute(sql, (since, WEEKS[-1])).fetchall()

    return median_ms(run, rounds=1)


def scenario(
    node: Node,
    name: str,
    group_by: tuple[str, ...],
    since: str,
    raw_sql: str,
    inner_sql: str | None = None,
) -> None:
    query = ReleaseQuery(
        schema_id="weekly_epi@1",
        measures=("cases", "deaths"),
        group_by=group_by,
        since=since,
        until=WEEKS[-1],
        purpose="benchmark",
    )
    made: list[pipeline.Release] = []

    def release() -> None:
        partner = PARTNERS[len(made) % len(PARTNERS)]  # a fresh partner: never a cache hit
        made.append(pipeline.release(node, partner_id=partner, query=query, now=NOW))

    raw_ms(node, raw_sql, since)  # warm the page cache for both
    PHASES.clear()
    raw_times, release_times, inner_times = [], [], []
    for _ in range(ROUNDS):  # interleaved, so all see the same machine
        raw_times.append(raw_ms(node, raw_sql, since))
        release_times.append(median_ms(release, rounds=1))
        if inner_sql is not None:
            inner_times.append(raw_ms(node, inner_sql, since))
    raw, release_ms = statistics.median(raw_times), statistics.median(release_times)
    first = made[0]
    cached_ms = median_ms(
        lambda: pipeline.release(node, partner_id=first.stored.partner_id, query=query, now=NOW),
        rounds=5,
    )
    document_ms = median_ms(first.as_document)
    cells = len(first.as_document()["cells"])
    sql_ms = statistics.median(PHASES["exact"])
    noise_ms = statistics.median(PHASES["noisy"])
    rest_ms = statistics.median(
        r - e - n for r, e, n in zip(release_times, PHASES["exact"], PHASES["noisy"], strict=True)
    )
    print(f"\n{name}: {cells:,} cells, measures cases and deaths")
    print(f"  raw SQL GROUP BY of the same cells     {raw:7.1f} ms")
    inner = statistics.median(inner_times) if inner_times else 0.0
    if inner_times:
        print(
            f"  raw SQL GROUP BY district, week        {inner:7.1f} ms   (the release's SQL, rolled up after)"
        )
    versus = f", {release_ms / inner:.2f}x the district GROUP BY" if inner_times else ""
    print(
        f"  release (decide, reserve, SQL, noise,  {release_ms:7.1f} ms   "
        f"ratio {release_ms / raw:.2f}x (goal <= 1.3x){versus}"
    )
    print(
        f"    store, audit): of which SQL + key set {sql_ms:6.1f} ms, OpenDP noise {noise_ms:.1f} ms, "
        f"the rest {rest_ms:.1f} ms"
    )
    print(
        f"  cached repeat (nothing charged)        {cached_ms:7.1f} ms   "
        f"{cached_ms / release_ms:.1%} of the first"
    )
    print(f"  as_document() of the release (JSON)    {document_ms:7.1f} ms")


def main() -> None:
    timed(aggregates, "exact")
    timed(privacy, "noisy")
    with tempfile.TemporaryDirectory(prefix="exchange-bench-") as directory:
        settings, _key = init_node(
            Path(directory) / "node", node_id="XA", name="Benchmark", gazetteer=gazetteer()
        )
        settings.policy_file.write_text(POLICY, encoding="utf-8")
        node = Node.open(settings)
        try:
            start = time.perf_counter()
            rows = seed(node)
            print(
                f"stored {rows:,} rows in {time.perf_counter() - start:.1f} s (SQLite, WAL, synchronous=FULL)"
            )
            table = cell_tables["weekly_epi@1"].name
            scenario(
                node,
                "A. districts x weeks (28 weeks, 280,000 rows in scope)",
                ("area:adm2", "week"),
                WEEKS[-28],
                f"SELECT area, week, SUM(cases), SUM(deaths) FROM {table} "
                "WHERE superseded_by IS NULL AND week >= ? AND week <= ? "
                "GROUP BY area, week",
            )
            scenario(
                node,
                "B. provinces x weeks (100 weeks, all 999,600 rows, rolled up)",
                ("area:adm1", "week"),
                WEEKS[0],
                f"SELECT substr(area, 1, 6) AS province, week, SUM(cases), SUM(deaths) FROM {table} "
                "WHERE superseded_by IS NULL AND week >= ? AND week <= ? "
                "GROUP BY province, week",
                f"SELECT area, week, SUM(cases), SUM(deaths) FROM {table} "
                "WHERE superseded_by IS NULL AND week >= ? AND week <= ? GROUP BY area, week",
            )
        finally:
            node.close()


if __name__ == "__main__":
    main()
