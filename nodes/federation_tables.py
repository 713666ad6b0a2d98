"""Tables of the federation: peers and their keys, seen nonces, releases received.

Peers and keys are never deleted: removing a peer or revoking a key stamps a time, so the
audit trail and the releases received from a peer keep a meaning. A key id is the
fingerprint of its public key, hence unique across all peers: one key, one owner.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from nodes.tables import UTCDateTime, metadata

#: Longest nonce we store; ours are 22 characters (128 bits of base64url).
NONCE_MAX = 128

peers = Table(
    "peers",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("url", String(500), nullable=False),
    Column("added_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("removed_at", UTCDateTime, nullable=True),
)

peer_keys = Table(
    "peer_keys",
    metadata,
    Column("key_id", String(43), primary_key=True),
    Column("peer_id", String(32), ForeignKey("peers.id"), nullable=False, index=True),
    Column("public_key", String(43), nullable=False),
    Column("valid_from", UTCDateTime, nullable=True),
    Column("valid_until", UTCDateTime, nullable=True),
    Column("revoked_at", UTCDateTime, nullable=True),
    Column("added_at", UTCDateTime, nullable=False),
    Column("source", String(20), nullable=False),  # operator, fingerprint, endorsement
)

nonces = Table(
    "nonces",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("key_id", String(43), nullable=False),
    Column("nonce", String(NONCE_MAX), nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    UniqueConstraint("key_id", "nonce", name="uq_nonces_key_nonce"),
    Index("ix_nonces_expires_at", "expires_at"),
)

received_releases = Table(
    "received_releases",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("peer_id", String(32), ForeignKey("peers.id"), nullable=False),
    Column("release_id", String(100), nullable=False),
    Column("schema_id", String(64), nullable=False),
    Column("key_id", String(43), nullable=False),  # the peer key that signed the response
    Column("received_at", UTCDateTime, nullable=False),
    Column("cached", Boolean, nullable=False),
    # The exchange exactly as sent and received: enough to verify the signature again later.
    Column("request_method", String(10), nullable=False),
    Column("request_url", Text, nullable=False),
    Column("request_headers", Text, nullable=False),  # JSON array of [name, value]
    Column("request_body", LargeBinary, nullable=False),
    Column("response_status", Integer, nullable=False),
    Column("response_headers", Text, nullable=False),
    Column("response_body", LargeBinary, nullable=False),
    # The received notice (``received_notices.id``) that says a correction superseded it.
    Column("superseded_by_notice", Integer, nullable=True),
    Index("ix_received_releases_peer_release", "peer_id", "release_id"),
)
