"""The one spelling of a time that a node signs or publishes.

RFC 3339 in UTC with six fraction digits and ``Z``: ``2026-03-01T12:00:00.000000Z``, the
spelling of the audit log's checkpoints. Signed statements that two parties build
independently (key endorsements) must agree on every byte, so a node never signs one
spelling and publishes another: the descriptor, endorsements and release documents all
use :func:`utc_text`.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utc_text(moment: datetime) -> str:
    """``moment`` in the one published spelling; raises ValueError for a naive datetime."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("a naive datetime is ambiguous; times are published in UTC")
    return moment.astimezone(UTC).isoformat(timespec="microseconds").removesuffix("+00:00") + "Z"
