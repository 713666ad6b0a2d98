"""Canonical forms: the exact bytes that are hashed and signed.

Entries and checkpoints are hashed and signed as RFC 8785 (JCS) JSON, so the
same fields always give the same bytes. Times have exactly one spelling
(RFC 3339, UTC, microseconds, ``Z``), so a time cannot be rewritten into an
equivalent string that hashes differently. Text fields are bounded and free
of control characters, so an export stays one entry per line and nothing an
auditor's terminal prints can be steered by log content.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime

import rfc8785

from nodes.audit.errors import InvalidEntryError

#: Largest integer RFC 8785 can represent exactly (I-JSON safe range).
MAX_SAFE_INT = 2**53 - 1

_TIME_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
_HEX64_RE = re.compile(r"[0-9a-f]{64}")

JsonScalar = str | int | None


def canonical_json(obj: Mapping[str, JsonScalar]) -> bytes:
    """Serialize a flat object as RFC 8785 bytes.

    Raises InvalidEntryError if a value cannot be canonicalized (an integer
    outside the safe range, a lone surrogate).
    """
    try:
        return rfc8785.dumps(dict(obj))
    except rfc8785.CanonicalizationError as exc:
        raise InvalidEntryError(f"cannot canonicalize: {exc.__class__.__name__}") from None


def format_time(value: datetime) -> str:
    """Spell a timezone-aware datetime as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC.

    Raises InvalidEntryError for naive datetimes: their meaning depends on the
    machine that wrote them.
    """
    if not isinstance(value, datetime):
        raise InvalidEntryError("time must be a datetime")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidEntryError("time must be timezone-aware")
    text = value.astimezone(UTC).isoformat(timespec="microseconds")
    return text.removesuffix("+00:00") + "Z"


def parse_time(text: str) -> datetime:
    """Parse the one spelling `format_time` produces; reject any other."""
    if not isinstance(text, str) or _TIME_RE.fullmatch(text) is None:
        raise InvalidEntryError("time must look like 2025-01-31T12:00:00.000000Z")
    try:
        return datetime.fromisoformat(text[:-1] + "+00:00")
    except ValueError:
        raise InvalidEntryError("time is not a valid calendar time") from None


def check_text(name: str, value: object, *, max_len: int, allow_empty: bool = False) -> str:
    """Return ``value`` if it is a bounded, printable string.

    Raises InvalidEntryError naming the field (never echoing its content) if
    it is not a string, is empty when it must not be, exceeds ``max_len``
    characters, or contains control or surrogate characters.
    """
    if not isinstance(value, str):
        raise InvalidEntryError(f"{name} must be a string")
    if not value and not allow_empty:
        raise InvalidEntryError(f"{name} must not be empty")
    if len(value) > max_len:
        raise InvalidEntryError(f"{name} is longer than {max_len} characters")
    if not value.isprintable() and any(unicodedata.category(ch) in {"Cc", "Cs"} for ch in value):
        raise InvalidEntryError(f"{name} contains control characters")
    return value


def check_hex64(name: str, value: object) -> str:
    """Return ``value`` if it is a lowercase hex SHA-256 digest."""
    if not isinstance(value, str) or _HEX64_RE.fullmatch(value) is None:
        raise InvalidEntryError(f"{name} must be 64 lowercase hex characters")
    return value


def check_count(name: str, value: object) -> int:
    """Return ``value`` if it is an int (not a bool) in ``0..MAX_SAFE_INT``."""
    if type(value) is not int or not 0 <= value <= MAX_SAFE_INT:
        raise InvalidEntryError(f"{name} must be an integer from 0 to 2**53-1")
    return value
