"""Key rotation: the node's key ring, each key's validity, and endorsements.

``exchange keys rotate`` makes a new key current; the old key stays valid for verification
for a grace period, so partners holding releases signed with it, or who have not yet
refreshed our descriptor, are not cut off at once.

Why endorsements: partners refresh our descriptor over the network, perhaps plain HTTP on
a closed network. A key that merely appears in a descriptor proves nothing, so each new
key carries an Ed25519 signature by the key it replaces, over the canonical (RFC 8785)
statement "node N's next key is K, valid from T; my previous key P is valid until U".
A partner accepts a new key only if a key it already trusts endorsed it: one fingerprint
checked out of band at ``peer add`` anchors every later rotation.

Every time in the statement, the ring and the descriptor has one spelling
(:func:`nodes.times.utc_text`), so a partner can rebuild the statement from the
descriptor's strings, as ``docs/federation.md`` documents, and verify it with any Ed25519
library.

The ring lives beside the private keys, in ``DIR/keys/keyring.json``; a key without an
entry there (the one ``exchange init`` made) is valid from its creation, indefinitely.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from nodes.identity import (
    CURRENT,
    NodeKey,
    b64url,
    b64url_decode,
    create_key,
    load_current,
    load_key,
    public_key_text,
    set_current,
)
from nodes.times import utc_text

KEYRING = "keyring.json"
ENDORSEMENT_TYPE = "crisis-exchange/key-endorsement/v1"
DEFAULT_GRACE = timedelta(days=7)


class InvalidEndorsementError(ValueError):
    """A key's endorsement is missing, malformed, or not signed by the key it names."""


@dataclass(frozen=True)
class Endorsement:
    """The previous key's signature over the new key and the previous key's end of life."""

    by: str
    previous_valid_until: datetime
    signature: str


@dataclass(frozen=True)
class KeyInfo:
    """One of the node's public keys as the descriptor publishes it."""

    kid: str
    public_key: Ed25519PublicKey
    valid_from: datetime | None
    valid_until: datetime | None
    current: bool
    endorsement: Endorsement | None

    def valid_at(self, moment: datetime) -> bool:
        return self.valid_until is None or moment < self.valid_until


def endorsement_bytes(
    *,
    node_id: str,
    kid: str,
    public_key: str,
    valid_from: datetime,
    previous_kid: str,
    previous_valid_until: datetime,
    spell: Callable[[datetime], str] = utc_text,
) -> bytes:
    """The canonical statement an endorsement signs; the type keeps it from meaning anything else."""
    return rfc8785.dumps(
        {
            "type": ENDORSEMENT_TYPE,
            "node_id": node_id,
            "key_id": kid,
            "public_key": public_key,
            "valid_from": spell(valid_from),
            "previous_key_id": previous_kid,
            "previous_valid_until": spell(previous_valid_until),
        }
    )


def _legacy_time(moment: datetime) -> str:
    """How endorsements made before times had one spelling wrote them (``+00:00``)."""
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def check_endorsement(
    endorser: Ed25519PublicKey,
    endorsement: Endorsement,
    *,
    node_id: str,
    kid: str,
    public_key: str,
    valid_from: datetime,
) -> None:
    """Return None if ``endorser`` signed this key for ``node_id``; raise InvalidEndorsementError.

    The statement is built with the one time spelling; endorsements made by earlier
    versions, which wrote whole seconds with ``+00:00``, are accepted in that spelling too
    (the same instants: nothing more is trusted).
    """
    try:
        signature = b64url_decode(endorsement.signature)
    except ValueError:
        signature = b""
    for spell in (utc_text, _legacy_time):
        statement = endorsement_bytes(
            node_id=node_id,
            kid=kid,
            public_key=public_key,
            valid_from=valid_from,
            previous_kid=endorsement.by,
            previous_valid_until=endorsement.previous_valid_until,
            spell=spell,
        )
        try:
            endorser.verify(signature, statement)
            return
        except InvalidSignature:
            continue
    raise InvalidEndorsementError(f"key {kid} is not endorsed by key {endorsement.by}")


def _time(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("naive datetime; keys are dated in UTC")
    return utc_text(moment)


def _parse_time(text: str | None) -> datetime | None:
    if text is None:
        return None
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError(f"{KEYRING}: naive time {text!r}")
    return parsed


def _read_ring(keys_dir: Path) -> dict[str, dict[str, Any]]:
    path = keys_dir / KEYRING
    if not path.is_file():
        return {}
    ring: dict[str, dict[str, Any]] = json.loads(path.read_text())["keys"]
    return ring


def _write_ring(keys_dir: Path, ring: dict[str, dict[str, Any]]) -> None:
    scratch = keys_dir / f".{KEYRING}.tmp"
    scratch.write_text(json.dumps({"keys": ring}, indent=2, sort_keys=True) + "\n")
    scratch.replace(keys_dir / KEYRING)


def key_ring(keys_dir: Path, *, now: datetime) -> list[KeyInfo]:
    """The keys valid at ``now``: the current one first, then older ones still in grace."""
    current = load_current(keys_dir)
    ring = _read_ring(keys_dir)
    found: list[KeyInfo] = []
    for pem in sorted(keys_dir.glob("*.pem")):
        kid = pem.stem
        entry = ring.get(kid, {})
        endorsed = entry.get("endorsement")
        info = KeyInfo(
            kid=kid,
            public_key=current.public_key
            if kid == current.kid
            else load_key(keys_dir, kid).public_key,
            valid_from=_parse_time(entry.get("valid_from")),
            valid_until=None if kid == current.kid else _parse_time(entry.get("valid_until")),
            current=kid == current.kid,
            endorsement=None
            if endorsed is None
            else Endorsement(
                by=endorsed["by"],
                previous_valid_until=_parse_time(endorsed["previous_valid_until"]) or now,
                signature=endorsed["signature"],
            ),
        )
        # A non-current key with no recorded end was never rotated out properly: not valid.
        if info.current or (info.valid_until is not None and info.valid_at(now)):
            found.append(info)
    return sorted(found, key=lambda k: (not k.current, -_since(k)))


def first_kid(keys_dir: Path) -> str | None:
    """The node's original key: the oldest key no other key endorsed (None without a ring:
    the node never rotated, its current key is its first)."""
    ring = _read_ring(keys_dir)
    unendorsed = [kid for kid, entry in ring.items() if not entry.get("endorsement")]
    present = [kid for kid in unendorsed if (keys_dir / f"{kid}.pem").is_file()]
    if not present:
        return None
    return min(present, key=lambda kid: str(ring[kid].get("valid_from") or ""))


def _since(key: KeyInfo) -> float:
    return key.valid_from.timestamp() if key.valid_from is not None else float("-inf")


def rotate(
    keys_dir: Path, *, node_id: str, grace: timedelta, now: datetime
) -> tuple[NodeKey, NodeKey]:
    """Make a new key current; the old one stays valid for ``grace``. Returns (new, old).

    Order matters for crashes: the new private key and the ring entry are written before
    ``current`` switches, so an interrupted rotation leaves the old key in charge.
    """
    if grace < timedelta(0):
        raise ValueError("the grace period cannot be negative")
    old = load_current(keys_dir)
    new = create_key(keys_dir, make_current=False)
    until = now + grace
    statement = endorsement_bytes(
        node_id=node_id,
        kid=new.kid,
        public_key=public_key_text(new.public_key),
        valid_from=now,
        previous_kid=old.kid,
        previous_valid_until=until,
    )
    ring = _read_ring(keys_dir)
    ring.setdefault(old.kid, {})["valid_until"] = _time(until)
    ring[new.kid] = {
        "valid_from": _time(now),
        "endorsement": {
            "by": old.kid,
            "previous_valid_until": _time(until),
            "signature": b64url(old.private_key.sign(statement)),
        },
    }
    _write_ring(keys_dir, ring)
    set_current(keys_dir, new.kid)
    return new, old


def previous_key(keys_dir: Path, *, now: datetime) -> NodeKey | None:
    """The most recent retired key still in its grace period, if any.

    The peer client signs with it once when a partner answers that it does not know our
    current key yet (it has not refreshed our descriptor since we rotated).
    """
    retired = [k for k in key_ring(keys_dir, now=now) if not k.current]
    return load_key(keys_dir, retired[0].kid) if retired else None


class CurrentKey:
    """The current signing key, reloaded when ``exchange keys rotate`` switches it.

    A running server picks up a rotation without a restart: each call reads the small
    ``current`` file and parses a private key only when it names another key.
    """

    def __init__(self, keys_dir: Path) -> None:
        self.keys_dir = keys_dir
        self._lock = threading.Lock()
        self._key: NodeKey | None = None

    def get(self) -> NodeKey:
        kid = (self.keys_dir / CURRENT).read_text().strip()
        with self._lock:
            if self._key is None or self._key.kid != kid:
                self._key = load_key(self.keys_dir, kid)
            return self._key


@functools.cache
def current_key(keys_dir: Path) -> CurrentKey:
    """The process-wide :class:`CurrentKey` of a node directory's keys."""
    return CurrentKey(keys_dir)
