"""Appending to the audit log inside the caller's transaction.

An entry and the act it records commit together or not at all: callers pass the connection
of the transaction that does the act (``with writing(engine) as conn``) and call `append`
in it. Call it **last**, after the act's own statements: the append holds the head row's
lock until the transaction ends, so appending last keeps that window short and means the
head lock is always the last lock a transaction takes (no lock-order deadlocks).

Why sequence numbers are unique and gap-free with any number of workers: every append
starts with ``UPDATE audit_head SET size = size + 1``. On PostgreSQL that takes the head
row's lock: a concurrent append waits until this transaction ends, then re-reads the row
it left (READ COMMITTED re-evaluates the locked row) and takes the next number. On SQLite
it takes the database write lock (writers already begin with ``BEGIN IMMEDIATE``). A
rolled-back act rolls back its increment too: no number is skipped or used twice.

Speed (an append must cost little more than the act's own row, benchmarks/audit.py):

* PostgreSQL: one statement, one round trip. Python validates the fields and renders the
  entry's canonical bytes around two holes, ``prev`` and ``seq`` (``A || prev || B || seq
  || C``: both are ASCII digits, so no escaping can differ); the statement fills them from
  the head row it locks, hashes the leaf with ``sha256()`` (PostgreSQL 11+), moves the head
  (``prev_leaf`` keeps the old last leaf, since ``RETURNING`` sees only new values) and
  inserts the entry.
* SQLite: three statements on the driver connection (microseconds each, in process).
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import errors as psycopg_errors
from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.exc import IntegrityError

from nodes.audit import vocabulary
from nodes.audit.entry import GENESIS_PREV, encode_entry
from nodes.audit.errors import LogIntegrityError, LogNotInitializedError
from nodes.audit.tables import HEAD_ID, audit_head
from nodes.audit.vocabulary import Action, Outcome, Role
from nodes.database import reading, writing

_PREV_KEY = b'"prev":"'
_SEQ_KEY = b',"seq":'
_PLACEHOLDER_PREV = "f" * 64
_NODE_ID_CACHE = "audit_node_id"  # in Connection.info: lives as long as the DBAPI connection

_PG_APPEND = """
WITH h AS (
    UPDATE audit_head
    SET size = size + 1,
        prev_leaf = last_leaf,
        last_leaf = sha256(
            decode('00', 'hex') || %(a)s
            || convert_to(coalesce(encode(last_leaf, 'hex'), %(genesis)s), 'UTF8')
            || %(b)s || convert_to(size::text, 'UTF8') || %(c)s
        )
    WHERE id = %(head_id)s AND node_id = %(node_id)s
    RETURNING size - 1 AS seq, prev_leaf, last_leaf
)
INSERT INTO audit_entries (seq, entry, leaf_hash)
SELECT seq,
       %(a)s || convert_to(coalesce(encode(prev_leaf, 'hex'), %(genesis)s), 'UTF8')
       || %(b)s || convert_to(seq::text, 'UTF8') || %(c)s,
       last_leaf
FROM h
RETURNING seq
"""

_SQLITE_BUMP = (
    "UPDATE audit_head SET size = size + 1 WHERE id = ? RETURNING size, last_leaf, node_id"
)
_SQLITE_INSERT = "INSERT INTO audit_entries (seq, entry, leaf_hash) VALUES (?, ?, ?)"
_SQLITE_MOVE = "UPDATE audit_head SET prev_leaf = last_leaf, last_leaf = ? WHERE id = ?"


@dataclass(frozen=True, slots=True)
class Head:
    """The log's current head: its size, last leaf hash and whose log it is."""

    node_id: str
    size: int
    last_leaf: bytes | None


@dataclass(frozen=True, slots=True)
class _Template:
    """An entry's canonical bytes with holes for prev and seq: ``a + prev + b + seq + c``."""

    a: bytes
    b: bytes
    c: bytes

    def fill(self, seq: int, prev: str) -> bytes:
        return self.a + prev.encode() + self.b + str(seq).encode() + self.c


def append(
    conn: Connection,
    *,
    actor: str,
    role: Role,
    action: Action,
    resource: str,
    outcome: Outcome,
    reason: str,
    partner: str | None = None,
    schema: str | None = None,
    epsilon_micro: int | None = None,
    rule: str | None = None,
    policy_hash: str | None = None,
    request_digest: str | None = None,
    now: datetime,
) -> int:
    """Append one entry in the caller's transaction and return its sequence number.

    ``role``, ``action`` and ``outcome`` come from closed vocabularies, ``actor`` and
    ``resource`` name their kind first (`nodes.audit.vocabulary`); ``partner`` (a peer
    node's id), ``schema`` (``name@version``) and ``epsilon_micro`` (privacy budget charged,
    in millionths of epsilon) are set whenever the act concerns them, and ``rule`` (what refused
    a release, `vocabulary.RULE_FORM`) whenever a rule refused it, so tools never parse
    ``reason``. Never put report content or secrets in any field. Raises InvalidEntryError
    (a ValueError) if a field is malformed or out of its vocabulary,
    LogNotInitializedError if the node never initialized its log, LogIntegrityError if
    the stored log already holds the next sequence number (a damaged log), and
    RuntimeError if ``conn`` is not in a transaction; the caller's transaction should
    then roll back, taking the act with it.
    """
    if not conn.in_transaction():
        raise RuntimeError("append must run inside the transaction of the act it records")
    vocabulary.check(
        actor=actor, role=role, action=action, outcome=outcome, resource=resource, rule=rule
    )
    fields: dict[str, Any] = {
        "time": now,
        "actor": actor,
        "role": role,
        "action": action,
        "resource": resource,
        "outcome": outcome,
        "reason": reason,
        "policy_hash": policy_hash,
        "request_digest": request_digest,
        "partner": partner,
        "schema": schema,
        "epsilon_micro": epsilon_micro,
        "rule": rule,
    }
    if conn.dialect.name == "postgresql":
        return _append_postgresql(conn, fields)
    return _append_sqlite(conn, fields)


def _template(fields: dict[str, Any], node_id: str) -> _Template:
    """Validate the fields (raising InvalidEntryError) and cut holes for prev and seq."""
    data = encode_entry(seq=1, prev=_PLACEHOLDER_PREV, node_id=node_id, **fields)
    at = data.index(_PREV_KEY) + len(_PREV_KEY)  # keys are unique: quotes in values are escaped
    rest = data[at + len(_PLACEHOLDER_PREV) :]
    cut = rest.index(_SEQ_KEY) + len(_SEQ_KEY)
    assert rest[cut : cut + 2] == b"1,"
    return _Template(a=data[:at], b=rest[:cut], c=rest[cut + 1 :])


def _driver(conn: Connection) -> Any:
    driver = conn.connection.driver_connection
    assert driver is not None
    return driver


def _append_sqlite(conn: Connection, fields: dict[str, Any]) -> int:
    driver = _driver(conn)
    rows = driver.execute(_SQLITE_BUMP, (HEAD_ID,)).fetchall()
    if not rows:
        raise LogNotInitializedError("the audit log has no head row; open the node first")
    ((size, last_leaf, node_id),) = rows
    seq = size - 1
    prev = GENESIS_PREV if last_leaf is None else bytes(last_leaf).hex()
    data = _template(fields, node_id).fill(seq, prev)
    leaf = hashlib.sha256(b"\x00" + data).digest()
    try:
        driver.execute(_SQLITE_INSERT, (seq, data, leaf))
    except sqlite3.IntegrityError:
        raise _occupied(seq) from None
    driver.execute(_SQLITE_MOVE, (leaf, HEAD_ID))
    return int(seq)


def _append_postgresql(conn: Connection, fields: dict[str, Any]) -> int:
    for _attempt in range(2):
        node_id = conn.info.get(_NODE_ID_CACHE)
        if node_id is None:
            head = read_head(conn)
            if head is None:
                raise LogNotInitializedError("the audit log has no head row; open the node first")
            node_id = conn.info[_NODE_ID_CACHE] = head.node_id
        template = _template(fields, node_id)
        params = {
            "a": template.a,
            "b": template.b,
            "c": template.c,
            "genesis": GENESIS_PREV,
            "head_id": HEAD_ID,
            "node_id": node_id,
        }
        try:
            row = _driver(conn).execute(_PG_APPEND, params).fetchone()
        except psycopg_errors.UniqueViolation:
            raise _occupied(None) from None
        if row is not None:
            return int(row[0])
        conn.info.pop(_NODE_ID_CACHE, None)  # the head changed hands or vanished: re-read
    raise LogNotInitializedError("the audit head row does not match this node; reopen the node")


def _occupied(seq: int | None) -> LogIntegrityError:
    at = "the next sequence number" if seq is None else f"seq {seq}"
    return LogIntegrityError(
        f"the audit log is damaged: an entry already holds {at} beyond the head row; "
        "restart the node to have its start-up check say what is wrong"
    )


def initialize(engine: Engine, *, node_id: str) -> Head:
    """Create the head row of an empty log for ``node_id`` if there is none; return the head.

    Safe to call from several workers at once. Raises LogIntegrityError if the database
    already holds the log of another node: entries must never mix two nodes' histories.
    """
    for _attempt in range(2):
        try:
            with writing(engine) as conn:
                head = read_head(conn)
                if head is None:
                    conn.execute(
                        insert(audit_head).values(
                            id=HEAD_ID, node_id=node_id, size=0, last_leaf=None, prev_leaf=None
                        )
                    )
                    head = Head(node_id=node_id, size=0, last_leaf=None)
        except IntegrityError:
            continue  # another worker created it first; read what it wrote
        if head.node_id != node_id:
            raise LogIntegrityError(
                f"this database holds the audit log of node {head.node_id!r}, not {node_id!r}; "
                "refusing to serve"
            )
        return head
    raise LogNotInitializedError("the audit head row could not be created")


def read_head(conn: Connection) -> Head | None:
    """The head as this transaction sees it, or None before `initialize`."""
    row = conn.execute(
        select(audit_head.c.node_id, audit_head.c.size, audit_head.c.last_leaf).where(
            audit_head.c.id == HEAD_ID
        )
    ).first()
    if row is None:
        return None
    last_leaf = None if row.last_leaf is None else bytes(row.last_leaf)
    return Head(node_id=row.node_id, size=int(row.size), last_leaf=last_leaf)


def head(engine: Engine) -> Head:
    """The committed head. Raises LogNotInitializedError before `initialize`."""
    with reading(engine) as conn:
        found = read_head(conn)
    if found is None:
        raise LogNotInitializedError("the audit log has no head row; open the node first")
    return found
