"""The audit log's two costs, each beside a baseline measured in the same run.

    .venv/bin/python benchmarks/audit.py                       # SQLite (+ PostgreSQL if
                                                               #   EXCHANGE_TEST_POSTGRES_URL)
    .venv/bin/python benchmarks/audit.py --postgres postgresql://postgres@127.0.0.1/test

(a) Offline verification of a 100,000-entry export (pulls, pushes, denials, admin actions,
    a checkpoint every 10,000 entries), from bytes and from a file, beside raw SHA-256
    (hashlib) of the same canonical entry bytes: the floor any verifier that hashes every
    entry must pay. Goal: 200,000 entries per second or more.

(b) Appending one entry inside a committed transaction (``writing(engine)`` + `append`),
    beside a committed transaction that inserts one plain row of the same size into the
    same database. Interleaved rounds, the median round of each. Goal: 1.2x or less, on
    SQLite (WAL, synchronous=FULL: one fsync per commit) and PostgreSQL.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    insert,
    text,
)

from nodes.audit.checkpoint import sign_checkpoint
from nodes.audit.entry import encode_entry, prev_for
from nodes.audit.export_format import build_export
from nodes.audit.log import append
from nodes.audit.merkle import MerkleTree, leaf_hash
from nodes.audit.verifier import verify_export, verify_export_file
from nodes.database import make_engine, writing
from nodes.directory import init_node
from nodes.node import Node

CHECKPOINT_EVERY = 10_000
ROUNDS = 3

ACTIONS = [
    ("agency:ht-mspp-dsp", "agency", "push", "allowed", "schema weekly-epi-counts@1 accepted"),
    (
        "partner:do-minsa",
        "partner",
        "pull",
        "allowed",
        "rule caribbean-weekly: admin1, 14-day embargo",
    ),
    ("partner:fr-spf", "partner", "pull", "denied", "no agreement covers schema line-list@1"),
    ("partner:who-paho", "partner", "pull", "denied", "partner budget exhausted for 2025-W10"),
    ("operator:cli", "operator", "token.issue", "allowed", "token for agency ht-lnsp, role agency"),
    ("auditor:eu-ombudsman", "auditor", "audit.export", "allowed", "read-only export"),
]


# --- (a) offline verification ---------------------------------------------------------------


def build_log(n: int) -> tuple[list[bytes], bytes, Ed25519PublicKey]:
    """``n`` realistic entries, their export with a checkpoint every 10,000, the public key."""
    key = Ed25519PrivateKey.generate()
    start = datetime(2025, 3, 1, tzinfo=UTC)
    entries: list[bytes] = []
    tree = MerkleTree()
    checkpoints = []
    previous: bytes | None = None
    for seq in range(n):
        actor, role, action, outcome, reason = ACTIONS[seq % len(ACTIONS)]
        data = encode_entry(
            seq=seq,
            time=start + timedelta(seconds=seq * 7),
            actor=actor,
            role=role,
            action=action,
            resource=f"schema:weekly-epi-counts@1/report/{seq:08x}",
            outcome=outcome,
            reason=reason,
            policy_hash="sha256:" + hashlib.sha256(b"policy v3").hexdigest(),
            request_digest=None if role == "operator" else f"sha-256=:{seq:043d}=:",
            prev=prev_for(previous),
            node_id="ht-mspp",
        )
        previous = leaf_hash(data)
        entries.append(data)
        tree.append(previous)
        if (seq + 1) % CHECKPOINT_EVERY == 0 or seq + 1 == n:
            checkpoints.append(
                sign_checkpoint(
                    key,
                    tree_size=seq + 1,
                    root_hash=tree.root(),
                    time=start + timedelta(seconds=seq * 7),
                    node_id="ht-mspp",
                )
            )
    return entries, build_export(entries, checkpoints), key.public_key()


def best_of(rounds: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_verification(n: int) -> None:
    started = time.perf_counter()
    entries, export, public_key = build_log(n)
    size = sum(len(e) for e in entries)
    print(f"(a) offline verification of an export of {n:,} entries")
    print(
        f"    built {n:,} entries ({size / n:.0f} bytes each on average), "
        f"{-(-n // CHECKPOINT_EVERY)} checkpoints, export {len(export) / 1e6:.1f} MB "
        f"in {time.perf_counter() - started:.1f} s"
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "export.jsonl"
        path.write_bytes(export)
        result = verify_export_file(path, public_key)
        assert result.entries == n
        assert result.tree_size == n
        t_bytes = best_of(ROUNDS, lambda: verify_export(export, public_key))
        t_file = best_of(ROUNDS, lambda: verify_export_file(path, public_key))

    sha256 = hashlib.sha256

    def raw_hashing() -> None:
        for data in entries:
            sha256(data).digest()

    t_hash = best_of(ROUNDS, raw_hashing)
    print(f"    verify export (bytes in memory): {n / t_bytes:>12,.0f} entries/s ({t_bytes:.3f} s)")
    print(f"    verify export (file on disk):    {n / t_file:>12,.0f} entries/s ({t_file:.3f} s)")
    print(f"    raw SHA-256 of the entry bytes:  {n / t_hash:>12,.0f} entries/s ({t_hash:.3f} s)")
    print(f"    ratio: verification costs {t_file / t_hash:.1f}x raw hashing (file vs hashlib)")
    goal = 200_000
    verdict = "meets" if n / t_file >= goal else "MISSES"
    print(f"    goal {goal:,} entries/s: {verdict} it")


# --- (b) the cost of one append ------------------------------------------------------------


@contextmanager
def sqlite_node(tmp: Path) -> Iterator[Node]:
    settings, _ = init_node(tmp / "sqlite-node", node_id="XA", name="bench")
    node = Node.open(settings)
    try:
        yield node
    finally:
        node.close()


@contextmanager
def postgres_node(tmp: Path, url: str) -> Iterator[Node]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = make_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    separator = "&" if "?" in url else "?"
    scoped = f"{url}{separator}options=-csearch_path%3D{schema}"
    settings, _ = init_node(tmp / "pg-node", node_id="XA", name="bench", database_url=scoped)
    node = Node.open(settings)
    try:
        yield node
    finally:
        node.close()
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def plain_table(engine: Engine) -> Table:
    """A table with one id and one blob: the cheapest row a log could be."""
    table = Table(
        "bench_plain",
        MetaData(),
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
        Column("data", LargeBinary, nullable=False),
    )
    table.create(engine)
    return table


def bench_appends(name: str, node: Node, count: int, block: int) -> None:
    engine = node.engine
    table = plain_table(engine)
    now = datetime.now(UTC)
    fields = {
        "actor": "token:moh-surveillance",
        "role": "agency",
        "action": "report.push",
        "resource": "report:123456",
        "schema": "weekly_epi@1",
        "outcome": "allowed",
        "reason": "2,400 rows stored, 0 older rows superseded",
        "request_digest": "sha-256:" + hashlib.sha256(b"report").hexdigest(),
    }

    def one_append() -> None:
        with writing(engine) as conn:
            append(conn, **fields, now=now)

    one_append()
    with engine.connect() as conn:
        sample = conn.execute(text("SELECT entry FROM audit_entries WHERE seq = 0")).scalar_one()
    # The audit row holds the entry's bytes and its 32-byte leaf hash.
    payload = os.urandom(len(sample) + 32)
    ids = iter(range(1, 10**9))
    core_insert = insert(table)
    marker = "%s" if engine.dialect.name == "postgresql" else "?"
    driver_insert = f"INSERT INTO bench_plain (id, data) VALUES ({marker}, {marker})"

    def one_plain_core() -> None:
        with writing(engine) as conn:
            conn.execute(core_insert, {"id": next(ids), "data": payload})

    def one_plain_driver() -> None:
        with writing(engine) as conn:
            driver = conn.connection.driver_connection
            assert driver is not None
            driver.execute(driver_insert, (next(ids), payload))

    paths: dict[str, tuple[Callable[[], None], list[float]]] = {
        "append": (one_append, []),
        "core": (one_plain_core, []),
        "driver": (one_plain_driver, []),
    }
    for work, _ in paths.values():  # warm every path (page cache, pool, prepared statements)
        for _ in range(block):
            work()
    for _ in range(max(1, count // block)):
        for work, rounds in paths.values():
            start = time.perf_counter()
            for _ in range(block):
                work()
            rounds.append((time.perf_counter() - start) / block)
    t = {key: statistics.median(rounds) for key, (_, rounds) in paths.items()}
    print(
        f"    {name}: append {t['append'] * 1e6:.0f} us/txn; plain row of {len(payload)} B: "
        f"{t['core'] * 1e6:.0f} us/txn (SQLAlchemy Core, as the node's acts write), "
        f"{t['driver'] * 1e6:.0f} us/txn (driver, the floor)"
    )
    for key, label in (("core", "Core row"), ("driver", "driver row")):
        ratio = t["append"] / t[key]
        verdict = "meets" if ratio <= 1.2 else "MISSES"
        print(f"      ratio append / {label}: {ratio:.2f}x ({verdict} the 1.2x goal)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=100_000, help="export size for (a)")
    parser.add_argument("--appends", type=int, default=2000, help="transactions per path, (b)")
    parser.add_argument("--block", type=int, default=100, help="transactions per round, (b)")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("EXCHANGE_TEST_POSTGRES_URL", ""),
        help="PostgreSQL URL for (b); default: EXCHANGE_TEST_POSTGRES_URL",
    )
    args = parser.parse_args()
    bench_verification(args.entries)
    print(
        f"(b) one append per committed transaction vs one plain row "
        f"(median of {max(1, args.appends // args.block)} interleaved rounds "
        f"of {args.block})"
    )
    with tempfile.TemporaryDirectory() as tmp:
        with sqlite_node(Path(tmp)) as node:
            bench_appends("SQLite", node, args.appends, args.block)
        if args.postgres:
            with postgres_node(Path(tmp), args.postgres) as node:
                bench_appends("PostgreSQL", node, args.appends, args.block)
        else:
            print("    PostgreSQL skipped: set EXCHANGE_TEST_POSTGRES_URL or pass --postgres")


if __name__ == "__main__":
    main()
