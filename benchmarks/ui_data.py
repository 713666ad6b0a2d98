"""The data set of benchmarks/ui.py: one node as full as a busy year leaves it, built fast.

Everything is valid data that the node's own code reads back, and most of it is made by
that code; only the bulk is copied in with plain inserts:

* **report rows**: 357 districts x W weeks x 7 age bands x 4 sexes of ``weekly_epi@1``, one
  report per week pushed by the benchmark's agency token, through `nodes.bulk.insert_rows`
  (as benchmarks/release.py);
* **releases**: a few real ones through `nodes.releases.pipeline.release` (policy, ledger,
  OpenDP, audit), then copies of their rows under fresh cache keys and times; the ledger
  is raised to what the copies would have spent (`nodes.ledger.raise_to`);
* **received releases**: one real signed pull from a second node (XB, in process, over
  Starlette's TestClient), then copies of its stored exchange: each still verifies;
* **audit entries**: canonical entries made by `nodes.audit.entry.encode_entry`, chained
  (each ``prev`` is the previous leaf) and inserted in batches, then one checkpoint signed
  by `nodes.audit.checkpoint_store.sign`, which stores the Merkle subtrees and the lookup
  index as the node always does. Reopening the node re-verifies the whole log.

The node is kept in ``DIRECTORY`` with ``dataset.json`` (sizes, sign-in tokens, ids the
pages need), so a rerun with the same sizes skips the build.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from sqlalchemy import func, insert, select, update

from exchange.api.app import create_app
from exchange.clients.pulling import peer_client, pull
from exchange.demo.data import NATIONS, as_csv, outbreak_rows, outbreak_weeks, policy_yaml
from nodes import ledger, peers, tokens
from nodes.access import Role
from nodes.audit import checkpoint_store
from nodes.audit.entry import GENESIS_PREV, encode_entry
from nodes.audit.log import read_head
from nodes.audit.tables import HEAD_ID, audit_entries, audit_head
from nodes.bulk import insert_rows
from nodes.database import reading, writing
from nodes.directory import init_node, sample_gazetteer
from nodes.federation_tables import received_releases
from nodes.identity import load_current, public_key_text
from nodes.node import Node
from nodes.releases import pipeline
from nodes.releases.tables import releases
from nodes.settings import NodeSettings
from nodes.tables import cell_tables, reports
from policies.query import ReleaseQuery
from schemas.codelists import AGE_BAND, SEX
from schemas.gazetteer import Area, Gazetteer
from schemas.periods import week_of

SCHEMA = "weekly_epi@1"
PROVINCES = 100
DISTRICTS = 357
ROWS_PER_WEEK = DISTRICTS * 7 * 4  # 9,996
PARTNERS = [f"P{i:02d}" for i in range(5)]
XB = NATIONS[1]  # its policy lets XA pull national weekly cases
BATCH = 50_000
MARKER = "dataset.json"

POLICY = f"""
version: 1
node: XA
schemas:
  weekly_epi@1:
    global_budget: {{epsilon: 10000, period: total}}
    weeks_per_person: 2
agreements:
  - id: bench
    partners: [{", ".join(PARTNERS)}]
    schema: weekly_epi@1
    measures: [cases, deaths]
    dimensions: {{area: {{level: 1}}, week: {{period: week}}}}
    embargo_days: 0
    purposes: [benchmark]
    valid_from: 2025-01-01
    valid_until: 2035-12-31
    privacy: {{mechanism: laplace, epsilon: 0.5}}
    budget: {{epsilon: 10000, period: total}}
    suppress_below: 5
"""


@dataclass(frozen=True)
class Sizes:
    rows: int
    releases: int
    entries: int
    received: int


@dataclass
class Dataset:
    """What the benchmark needs to open the node and address its pages."""

    directory: str
    sizes: Sizes
    tokens: dict[str, str]
    received_id: int
    audit_seq: int
    report_rows: int
    built_seconds: float

    @property
    def settings(self) -> NodeSettings:
        return NodeSettings.load(Path(self.directory) / "xa")


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def gazetteer() -> Gazetteer:
    areas = [Area(code="XA", name="Republic of XA", level=0)]
    for p in range(PROVINCES):
        areas.append(Area(code=f"XA-P{p:02d}", name=f"Province {p}", level=1, parent="XA"))
    for d in range(DISTRICTS):
        province = f"XA-P{d % PROVINCES:02d}"
        areas.append(
            Area(code=f"{province}-D{d // PROVINCES}", name=f"D{d}", level=2, parent=province)
        )
    return Gazetteer(areas=tuple(areas))


def _weeks(count: int) -> list[str]:
    last = now().date() - dt.timedelta(weeks=1)
    return [week_of(last - dt.timedelta(weeks=back), "iso") for back in range(count - 1, -1, -1)]


def seed_reports(node: Node, agency_id: int, rows: int) -> int:
    """One report per week, ``ROWS_PER_WEEK`` rows each; returns the rows stored."""
    weeks = _weeks(max(1, round(rows / ROWS_PER_WEEK)))
    districts = sorted(a.code for a in node.gazetteer.areas if a.level == 2)
    bands, sexes = AGE_BAND.ordered(), SEX.ordered()
    rng = np.random.default_rng(11)
    table = cell_tables[SCHEMA]
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
    stored = 0
    start = now() - dt.timedelta(weeks=len(weeks))
    with writing(node.engine) as conn:
        for i, week in enumerate(weeks):
            report = conn.execute(
                reports.insert()
                .values(
                    schema_id=SCHEMA,
                    token_id=agency_id,
                    received_at=start + dt.timedelta(weeks=i),
                    content_sha256=hashlib.sha256(week.encode()).hexdigest(),
                    row_count=ROWS_PER_WEEK,
                    superseded_rows=0,
                )
                .returning(reports.c.id)
            ).scalar_one()
            cases = rng.poisson(6, ROWS_PER_WEEK).tolist()
            deaths = rng.poisson(0.3, ROWS_PER_WEEK).tolist()
            keys = ((a, b, s) for a in districts for b in bands for s in sexes)
            batch = (
                (report, a, week, b, s, c, d, 0, 0)
                for (a, b, s), c, d in zip(keys, cases, deaths, strict=True)
            )
            insert_rows(conn, table, columns, batch)
            stored += ROWS_PER_WEEK
    return stored


def seed_audit(node: Node, count: int) -> None:
    """``count`` chained entries appended after the log's head, in a year before now."""
    kinds: list[dict[str, Any]] = [
        {
            "actor": "token:ministry-of-health",
            "role": "agency",
            "action": "report.push",
            "resource": "report:1",
            "outcome": "allowed",
            "reason": "9,996 rows stored",
            "schema": SCHEMA,
        },
        {
            "actor": "partner:P01",
            "role": "partner",
            "action": "release",
            "resource": "release:1",
            "outcome": "allowed",
            "reason": "agreement bench",
            "partner": "P01",
            "schema": SCHEMA,
            "epsilon_micro": 1_000_000,
        },
        {
            "actor": "partner:P02",
            "role": "partner",
            "action": "release",
            "resource": "schema:weekly_epi@1",
            "outcome": "denied",
            "reason": "admin level 2 is finer than the agreement allows",
            "partner": "P02",
            "schema": SCHEMA,
            "epsilon_micro": 0,
            "rule": "agreement bench",
        },
        {
            "actor": "partner:P03",
            "role": "partner",
            "action": "release",
            "resource": "release:1",
            "outcome": "replayed",
            "reason": "repeated release",
            "partner": "P03",
            "schema": SCHEMA,
            "epsilon_micro": 0,
        },
        {
            "actor": "unknown",
            "role": "unknown",
            "action": "auth.failed",
            "resource": "route:GET /v1/reports",
            "outcome": "denied",
            "reason": "unknown token",
        },
        {
            "actor": "token:national-auditor",
            "role": "auditor",
            "action": "audit.export",
            "resource": "log:XA",
            "outcome": "allowed",
            "reason": "export",
        },
        {
            "actor": "partner:P04",
            "role": "partner",
            "action": "release",
            "resource": "schema:weekly_epi@1",
            "outcome": "denied",
            "reason": "budget spent",
            "partner": "P04",
            "schema": SCHEMA,
            "epsilon_micro": 0,
            "rule": "budget",
        },
    ]
    first_time = now() - dt.timedelta(days=365)
    step = dt.timedelta(days=360) / max(count, 1)
    with writing(node.engine) as conn:
        head = read_head(conn)
        assert head is not None
        seq, previous = head.size, head.last_leaf
        before = None
        driver = conn.connection.driver_connection
        assert driver is not None
        sql = "INSERT INTO audit_entries (seq, entry, leaf_hash) VALUES (?, ?, ?)"
        batch: list[tuple[int, bytes, bytes]] = []
        for i in range(count):
            fields = kinds[i % len(kinds)]
            data = encode_entry(
                seq=seq,
                time=first_time + step * i,
                policy_hash=None,
                request_digest=None,
                prev=GENESIS_PREV if previous is None else previous.hex(),
                node_id=head.node_id,
                **fields,
            )
            before, previous = previous, hashlib.sha256(b"\x00" + data).digest()
            batch.append((seq, data, previous))
            seq += 1
            if len(batch) == BATCH:
                driver.executemany(sql, batch)
                batch.clear()
        if batch:
            driver.executemany(sql, batch)
        conn.execute(
            update(audit_head)
            .where(audit_head.c.id == HEAD_ID)
            .values(size=seq, last_leaf=previous, prev_leaf=before)
        )


def _query(weeks: list[str]) -> ReleaseQuery:
    return ReleaseQuery(
        schema_id=SCHEMA,
        measures=("cases", "deaths"),
        group_by=("area:adm1", "week"),
        since=weeks[max(0, len(weeks) - 10)],
        until=weeks[-1],
        purpose="benchmark",
    )


def seed_releases(node: Node, count: int, weeks: list[str]) -> None:
    """One real release per partner, then copies up to ``count``; the ledger follows."""
    made = [pipeline.release(node, partner_id=p, query=_query(weeks), now=now()) for p in PARTNERS]
    with writing(node.engine) as conn:
        templates = [
            dict(conn.execute(select(releases).where(releases.c.id == r.stored.id)).one()._mapping)
            for r in made
        ]
        start = now() - dt.timedelta(days=300)
        spent: dict[str, int] = {}
        rows: list[dict[str, Any]] = []
        for i in range(max(0, count - len(made))):
            row = dict(templates[i % len(templates)])
            del row["id"]
            key = hashlib.sha256(f"copy {i}".encode()).hexdigest()
            at = start + dt.timedelta(seconds=i * 60)
            row.update(cache_key=key, cache_slot=key, created_at=at, released_at=at)
            spent[row["partner_id"]] = spent.get(row["partner_id"], 0) + row["epsilon_micro"]
            rows.append(row)
            if len(rows) == 5000:
                conn.execute(insert(releases), rows)
                rows.clear()
        if rows:
            conn.execute(insert(releases), rows)
        accounts = ledger.accounts(conn)
        raised = []
        for scope, partner, schema, period, total, cap in accounts:
            extra = sum(spent.values()) if scope == "global" else spent.get(partner, 0)
            raised.append((scope, partner, schema, period, total + extra, cap))
        ledger.raise_to(conn, raised, now())


def _peer(node: Node, peer_id: str, name: str, url: str, public_key: str) -> None:
    peers.add_peer(
        node.engine, peer_id=peer_id, name=name, url=url, keys=[peers.NewKey(public_key)], now=now()
    )


def seed_received(xa: Node, directory: Path, count: int) -> int:
    """A real signed pull from XB, then copies of the stored exchange; the last id."""
    settings, _key = init_node(
        directory / "xb",
        node_id=XB.id,
        name=XB.name,
        public_url="http://xb.test",
        gazetteer=sample_gazetteer(XB.id),
    )
    settings.policy_file.write_text(policy_yaml(XB), encoding="utf-8")
    xb = Node.open(settings)
    try:
        _peer(
            xb,
            "XA",
            "Republic of XA",
            xa.settings.public_url,
            public_key_text(load_current(xa.settings.keys_dir).public_key),
        )
        _peer(
            xa,
            XB.id,
            XB.name,
            settings.public_url,
            public_key_text(load_current(settings.keys_dir).public_key),
        )
        _record, agency = tokens.issue_token(
            xb.engine, name="moh", role="agency", schemas=(SCHEMA,), now=now()
        )
        with TestClient(create_app(settings, node=xb), base_url=settings.public_url) as http:
            pushed = http.post(
                f"/v1/reports/{SCHEMA}",
                content=as_csv(outbreak_rows(XB, xb.gazetteer, now().date())),
                headers={"Authorization": f"Bearer {agency}", "Content-Type": "text/csv"},
            )
            assert pushed.status_code == 201, pushed.text
            client = peer_client(xa, http, peers.get_peer(xa.engine, XB.id))
            found = outbreak_weeks(now().date())
            result = pull(
                xa,
                client,
                ReleaseQuery(
                    schema_id=SCHEMA,
                    measures=("cases",),
                    group_by=("area:adm0", "week"),
                    since=found[0],
                    until=found[-1],
                    purpose="outbreak_response",
                ),
            )
    finally:
        xb.close()
    with writing(xa.engine) as conn:
        template = dict(
            conn.execute(
                select(received_releases).where(received_releases.c.id == result.received_id)
            )
            .one()
            ._mapping
        )
        del template["id"]
        start = now() - dt.timedelta(days=300)
        rows = [
            {**template, "received_at": start + dt.timedelta(seconds=i * 60)}
            for i in range(max(0, count - 1))
        ]
        for low in range(0, len(rows), 5000):
            conn.execute(insert(received_releases), rows[low : low + 5000])
        last = conn.execute(select(func.max(received_releases.c.id))).scalar_one()
    return int(last)


def build(directory: Path, sizes: Sizes) -> Dataset:
    started = time.perf_counter()
    settings, _key = init_node(
        directory / "xa", node_id="XA", name="Republic of XA", gazetteer=gazetteer()
    )
    node = Node.open(settings)
    try:
        node.apply_policy(POLICY, source="benchmark", actor="operator", now=now())
        secrets: dict[str, str] = {}
        agency_id = 0
        people: dict[Role, str] = {
            "agency": "ministry-of-health",
            "analyst": "partner-data-analyst",
            "auditor": "national-auditor",
            "operator": "node-operator",
        }
        for role, person in people.items():
            record, secrets[role] = tokens.issue_token(
                node.engine,
                name=person,
                role=role,
                schemas=(SCHEMA,) if role == "agency" else (),
                now=now(),
            )
            if role == "agency":
                agency_id = record.id
        for partner in PARTNERS:
            key = public_key_text(Ed25519PrivateKey.generate().public_key())
            _peer(node, partner, f"Partner {partner}", f"http://{partner.lower()}.test", key)
        step = time.perf_counter()
        seed_audit(node, sizes.entries)
        print(f"  {sizes.entries:,} audit entries in {time.perf_counter() - step:.1f} s")
        step = time.perf_counter()
        stored = seed_reports(node, agency_id, sizes.rows)
        print(f"  {stored:,} report rows in {time.perf_counter() - step:.1f} s")
        step = time.perf_counter()
        weeks = _weeks(max(1, round(sizes.rows / ROWS_PER_WEEK)))
        seed_releases(node, sizes.releases, weeks)
        print(f"  {sizes.releases:,} releases in {time.perf_counter() - step:.1f} s")
        step = time.perf_counter()
        received_id = seed_received(node, directory, sizes.received)
        print(f"  {sizes.received:,} received releases in {time.perf_counter() - step:.1f} s")
        step = time.perf_counter()
        checkpoint_store.sign(node.engine, load_current(settings.keys_dir).private_key, now=now())
        with reading(node.engine) as conn:
            size = read_head(conn).size  # type: ignore[union-attr]
            assert (
                conn.execute(select(func.count()).select_from(audit_entries)).scalar_one() == size
            )
        print(
            f"  checkpoint of {size:,} entries (Merkle subtrees, lookup index) in "
            f"{time.perf_counter() - step:.1f} s"
        )
    finally:
        node.close()
    dataset = Dataset(
        directory=str(directory),
        sizes=sizes,
        tokens=secrets,
        received_id=received_id,
        audit_seq=size // 2,
        report_rows=stored,
        built_seconds=time.perf_counter() - started,
    )
    (directory / MARKER).write_text(json.dumps(asdict(dataset), indent=2), encoding="utf-8")
    return dataset


def load_or_build(directory: Path, sizes: Sizes) -> Dataset:
    """The data set kept in ``directory`` if it has these sizes; else build it there."""
    marker = directory / MARKER
    if marker.is_file():
        kept = json.loads(marker.read_text(encoding="utf-8"))
        if Sizes(**kept["sizes"]) == sizes:
            kept["sizes"] = sizes
            return Dataset(**kept)
        print(f"{directory} holds a data set of other sizes: rebuilding it")
        for part in ("xa", "xb"):
            shutil.rmtree(directory / part, ignore_errors=True)
        marker.unlink()
    directory.mkdir(parents=True, exist_ok=True)
    print(f"building the data set in {directory} ({sizes})")
    return build(directory, sizes)
