"""The budget ledger and the stored releases (migration 0003 creates them).

* ``budget_ledger``: one row per account: a partner's budget for a schema in a period, or
  the global budget of a schema in a period (``partner_id`` ``*``). Amounts are integer
  micro-epsilon. Rows are only ever charged (``spent_micro`` grows), never refunded.
* ``releases``: every release, from the moment its budget is reserved (``status``
  ``reserved``) to the moment its noisy cells are stored (``released``). A reserved row
  that never completes is a charge whose answer was lost; it stays, charged.
  ``cache_slot`` (migration 0006) is the cache key of the one release that answers it for
  its partner, unique per partner: an identical request that arrives while that release
  is being computed cannot reserve a second one and waits for it instead. A release whose
  computation failed gives its slot up (NULL), so the question can be asked again.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from nodes.tables import UTCDateTime, metadata

GLOBAL = "*"  # the partner id of a schema's global account

budget_ledger = Table(
    "budget_ledger",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("scope", String(8), nullable=False),  # partner | global
    Column("partner_id", String(64), nullable=False),
    Column("schema_id", String(64), nullable=False),
    Column("period", String(16), nullable=False),  # total | 2026 | 2026-03
    Column("cap_micro", BigInteger, nullable=False),
    Column("spent_micro", BigInteger, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("scope", "partner_id", "schema_id", "period", name="uq_budget_ledger_account"),
    CheckConstraint("spent_micro >= 0", name="ck_budget_ledger_spent"),
)

releases = Table(
    "releases",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("partner_id", String(64), nullable=False),
    Column("schema_id", String(64), nullable=False),
    Column("status", String(10), nullable=False),  # reserved | released
    Column("cache_key", String(64), nullable=False),
    Column("data_version", BigInteger, nullable=False),
    Column("agreement_id", String(64), nullable=False),
    Column("policy_hash", String(80), nullable=False),
    Column("mechanism", String(10), nullable=False),
    Column("epsilon_micro", BigInteger, nullable=False),
    Column("delta", Float, nullable=True),
    Column("query", Text, nullable=False),  # JSON: the effective query
    Column("decision", Text, nullable=False),  # JSON: rule, reasons, requested query
    Column("noise", Text, nullable=False),  # JSON: per measure d_in, scale, µε, accuracy
    Column("cells", Text, nullable=True),  # JSON: axes and published values, once released
    Column("created_at", UTCDateTime, nullable=False),
    Column("released_at", UTCDateTime, nullable=True),
    Column("cache_slot", String(64), nullable=True),
    Index("ix_releases_partner_cache", "partner_id", "cache_key"),
    Index("uq_releases_cache_slot", "partner_id", "cache_slot", unique=True),
    # counts per partner, schema and agreement from the index alone (`store.counts`)
    Index("ix_releases_counts", "status", "partner_id", "schema_id", "agreement_id"),
)
