"""The audit log's tables, on the node's shared ``metadata`` (migration 0002 creates them).

* ``audit_head``: one row (id 1) holding the log's size, the last two leaf hashes and the
  node id (``prev_leaf`` lets PostgreSQL append in one statement: see `nodes.audit.log`).
  Every append updates it first, so appends serialize on its row lock (PostgreSQL) or on
  the database write lock (SQLite): sequence numbers come out unique and gap-free under any
  number of workers, and the entry commits or rolls back with the act that wrote it.
* ``audit_entries``: each entry's canonical bytes, verbatim, and their leaf hash: the least
  an append can write (no secondary index to update on the hot path).
* ``audit_lookup``: ``time``, ``actor`` and ``action`` of each entry, indexed, so auditors
  can filter a large log, and its ``outcome``, ``partner``, ``schema`` and ``rule`` in
  today's vocabulary (`nodes.audit.vocabulary.normalize`; NULL where the entry has none),
  so counters are one grouped query over an index (migration 0009). Written in batches
  when a checkpoint is signed, like ``audit_nodes``; newer entries are filtered by reading
  them (`nodes.audit.lookup`).
* ``audit_nodes``: hashes of complete ("perfect") Merkle subtrees of height 1 and up,
  written when a checkpoint is signed, so roots and proofs cost O(log n) lookups instead of
  re-hashing the log. They cover exactly the leaves of the largest checkpoint (written in
  the same transaction), and only sizes up to it are ever proved.
* ``audit_checkpoints``: every checkpoint this node signed, as the exact line it published.
* ``audit_peer_checkpoints``: checkpoints seen from peers, with the verdict of comparing
  each with the one before (witnessing).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Table,
    Text,
)

from nodes.tables import UTCDateTime, metadata

#: The one row of ``audit_head``.
HEAD_ID = 1

_Seq = BigInteger().with_variant(Integer, "sqlite")  # INTEGER PRIMARY KEY is SQLite's rowid

audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("node_id", String(128), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("last_leaf", LargeBinary(32), nullable=True),
    Column("prev_leaf", LargeBinary(32), nullable=True),  # last_leaf before the last append
)

audit_entries = Table(
    "audit_entries",
    metadata,
    Column("seq", _Seq, primary_key=True, autoincrement=False),
    Column("entry", LargeBinary, nullable=False),
    Column("leaf_hash", LargeBinary(32), nullable=False),
)

audit_lookup = Table(
    "audit_lookup",
    metadata,
    Column("seq", _Seq, primary_key=True, autoincrement=False),
    Column("time", UTCDateTime, nullable=False),
    Column("actor", String(256), nullable=False),
    Column("action", String(64), nullable=False),
    Column("outcome", String(32), nullable=True),  # always set (0009 backfills it)
    Column("partner", String(512), nullable=True),  # format-1 entries name it in resource
    Column("schema", String(512), nullable=True),
    Column("rule", String(128), nullable=True),
    Index("ix_audit_lookup_actor_seq", "actor", "seq"),
    Index("ix_audit_lookup_action_seq", "action", "seq"),
    Index("ix_audit_lookup_time", "time"),
    Index("ix_audit_lookup_outcome_seq", "outcome", "seq"),
    Index("ix_audit_lookup_action_outcome_seq", "action", "outcome", "seq"),
    # covers the grouped count of `nodes.audit.summary.outcome_counts` (an index-only scan)
    Index("ix_audit_lookup_outcomes", "action", "outcome", "partner", "schema", "rule"),
)

audit_nodes = Table(
    "audit_nodes",
    metadata,
    Column("height", SmallInteger, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
)

audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tree_size", BigInteger, nullable=False, index=True),
    Column("root_hash", String(64), nullable=False),
    Column("time", UTCDateTime, nullable=False),
    Column("key_id", String(128), nullable=False),
    Column("line", LargeBinary, nullable=False),
)

audit_peer_checkpoints = Table(
    "audit_peer_checkpoints",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("peer_id", String(128), nullable=False),
    Column("tree_size", BigInteger, nullable=False),
    Column("root_hash", String(64), nullable=False),
    Column("time", UTCDateTime, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("line", LargeBinary, nullable=False),
    Column("verdict", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Index("ix_audit_peer_checkpoints_peer_id", "peer_id", "id"),
)
