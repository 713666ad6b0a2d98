"""The tables of standing subscriptions (migration 0014 creates them).

Provider side:

* ``subscriptions``: a partner's standing question (the query as JSON), its cadence
  (``week`` or ``month``) and first period, and, once it stopped, when, by whom
  (``partner``, ``operator``, ``sunset``, ``budget``) and why.
* ``subscription_periods``: one row per period made, unique per (subscription, period).
  Inserting it claims the period (``claimed_at``); ``release_id`` is set once the release
  is stored. The row is deleted if the release failed before anything was charged.

Partner side (what this node subscribed to at its peers):

* ``peer_subscriptions``: our subscriptions as the peer last described them.
* ``peer_subscription_periods``: one row per period we fetched, unique per (peer,
  subscription, period), claimed before the fetch, ``received_id`` once stored.
"""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Index, Integer, String, Table, Text, UniqueConstraint

from nodes.tables import UTCDateTime, metadata

subscriptions = Table(
    "subscriptions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("partner_id", String(64), nullable=False),
    Column("schema_id", String(64), nullable=False),
    Column("query", Text, nullable=False),  # JSON: the ReleaseQuery as asked
    Column("cadence", String(8), nullable=False),  # week | month
    Column("first_period", String(16), nullable=False),  # 2026-W05 | 2026-03
    Column("created_at", UTCDateTime, nullable=False),
    Column("ended_at", UTCDateTime, nullable=True),
    Column("ended_by", String(16), nullable=True),  # partner | operator | sunset | budget
    Column("end_reason", Text, nullable=True),
    Index("ix_subscriptions_partner", "partner_id"),
)

subscription_periods = Table(
    "subscription_periods",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("subscription_id", Integer, ForeignKey("subscriptions.id"), nullable=False),
    Column("period", String(16), nullable=False),
    Column("release_id", Integer, nullable=True),
    Column("claimed_at", UTCDateTime, nullable=False),
    Column("made_at", UTCDateTime, nullable=True),
    UniqueConstraint("subscription_id", "period", name="uq_subscription_periods_period"),
)

peer_subscriptions = Table(
    "peer_subscriptions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("peer_id", String(64), nullable=False),
    Column("subscription_id", Integer, nullable=False),  # the peer's id for it
    Column("cadence", String(8), nullable=False),
    Column("query", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("ended_at", UTCDateTime, nullable=True),
    Column("end_reason", Text, nullable=True),
    Column("releases_left", Integer, nullable=True),  # the peer's forecast, last seen
    Column("checked_at", UTCDateTime, nullable=False),
    UniqueConstraint("peer_id", "subscription_id", name="uq_peer_subscriptions_id"),
)

peer_subscription_periods = Table(
    "peer_subscription_periods",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("peer_id", String(64), nullable=False),
    Column("subscription_id", Integer, nullable=False),
    Column("period", String(16), nullable=False),
    Column("received_id", Integer, nullable=True),
    Column("claimed_at", UTCDateTime, nullable=False),
    UniqueConstraint(
        "peer_id", "subscription_id", "period", name="uq_peer_subscription_periods_period"
    ),
)
