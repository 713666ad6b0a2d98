"""One audit entry: who did what to which resource, with what outcome, and why.

An entry's identity is its canonical bytes (RFC 8785 JSON of the fields
below); its Merkle leaf hash is ``SHA-256(0x00 || bytes)``. Each entry also
carries ``prev``, the hex leaf hash of the entry before it (``GENESIS_PREV``
for seq 0): a hash chain as in X-Road's message log. The Merkle tree proves
a checkpoint covers the log; the chain lets the offline verifier say *which*
entry was changed, dropped or moved, not merely that something was.

Entries must never carry secrets or report content; deciding that is the
caller's job. This module enforces the shape: types, bounded lengths, no
control characters, one spelling of time. Entries carry structured fields
(``partner``, ``schema``, ``epsilon_micro``) since format 2; format-1 entries,
written before, are read and hashed exactly as stored (`AuditEntry.structured`). A format-2
entry may also carry ``rule``, the policy rule that refused a release: the key is written
only when set, so entries without it keep exactly the bytes they had before it existed.
The closed vocabularies of new entries are checked by `nodes.audit.vocabulary`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from nodes.audit import merkle
from nodes.audit.canonical import (
    canonical_json,
    check_count,
    check_hex64,
    check_text,
    format_time,
    parse_time,
)
from nodes.audit.errors import InvalidEntryError

#: ``prev`` of the first entry (seq 0): no entry comes before it.
GENESIS_PREV = "0" * 64

#: Field name -> (maximum length in characters, may be empty).
TEXT_LIMITS: dict[str, tuple[int, bool]] = {
    "actor": (256, False),
    "role": (64, False),
    "action": (64, False),
    "resource": (512, False),
    "outcome": (32, False),
    "reason": (2048, True),
    "node_id": (128, False),
}
#: Nullable fields -> maximum length.
OPTIONAL_LIMITS: dict[str, int] = {"policy_hash": 128, "request_digest": 256}
#: Structured fields of format 2 (nullable; ``epsilon_micro`` an integer).
STRUCTURED_LIMITS: dict[str, int] = {"partner": 128, "schema": 128}
#: ``rule`` (optional in format 2, absent from the bytes when None).
RULE_LIMIT = 128

#: The fields of a format-1 entry (written before the structured fields existed).
ENTRY_FIELDS_V1 = frozenset(
    {"seq", "time", "prev", *TEXT_LIMITS, *OPTIONAL_LIMITS},
)
ENTRY_FIELDS = ENTRY_FIELDS_V1 | {*STRUCTURED_LIMITS, "epsilon_micro"}
ENTRY_FIELDS_RULE = ENTRY_FIELDS | {"rule"}


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """A validated audit entry; holding one means its fields are well-formed.

    Raises InvalidEntryError on construction if any field is not.
    """

    seq: int
    time: datetime
    actor: str
    role: str
    action: str
    resource: str
    outcome: str
    reason: str
    policy_hash: str | None
    request_digest: str | None
    prev: str
    node_id: str
    partner: str | None = None
    schema: str | None = None
    epsilon_micro: int | None = None
    rule: str | None = None
    structured: bool = True  # False: a format-1 entry, without the three fields above

    def __post_init__(self) -> None:
        check_count("seq", self.seq)
        if self.epsilon_micro is not None:
            check_count("epsilon_micro", self.epsilon_micro)
        for name, max_len in STRUCTURED_LIMITS.items():
            value = getattr(self, name)
            if value is not None:
                check_text(name, value, max_len=max_len)
        if self.rule is not None:
            check_text("rule", self.rule, max_len=RULE_LIMIT)
        if not self.structured and (
            self.partner,
            self.schema,
            self.epsilon_micro,
            self.rule,
        ) != (None, None, None, None):
            raise InvalidEntryError("a format-1 entry has no structured fields")
        format_time(self.time)
        for name, (max_len, allow_empty) in TEXT_LIMITS.items():
            check_text(name, getattr(self, name), max_len=max_len, allow_empty=allow_empty)
        for name, max_len in OPTIONAL_LIMITS.items():
            value = getattr(self, name)
            if value is not None:
                check_text(name, value, max_len=max_len)
        check_hex64("prev", self.prev)
        if (self.seq == 0) != (self.prev == GENESIS_PREV):
            raise InvalidEntryError("prev must be GENESIS_PREV exactly when seq is 0")

    def to_bytes(self) -> bytes:
        """The canonical RFC 8785 bytes: what is hashed, stored and exported."""
        fields: dict[str, str | int | None] = {
            "seq": self.seq,
            "time": format_time(self.time),
            "actor": self.actor,
            "role": self.role,
            "action": self.action,
            "resource": self.resource,
            "outcome": self.outcome,
            "reason": self.reason,
            "policy_hash": self.policy_hash,
            "request_digest": self.request_digest,
            "prev": self.prev,
            "node_id": self.node_id,
        }
        if self.structured:
            fields |= {
                "partner": self.partner,
                "schema": self.schema,
                "epsilon_micro": self.epsilon_micro,
            }
            if self.rule is not None:
                fields["rule"] = self.rule
        return canonical_json(fields)

    def leaf_hash(self) -> bytes:
        """The Merkle leaf hash of the canonical bytes (also the next entry's ``prev``)."""
        return merkle.leaf_hash(self.to_bytes())

    @classmethod
    def from_bytes(cls, data: bytes) -> AuditEntry:
        """Parse canonical entry bytes, e.g. as read back from storage.

        Raises InvalidEntryError unless ``data`` is exactly what `to_bytes`
        would produce for valid fields: a stored entry that is not canonical
        would hash differently from what the node signed.
        """
        try:
            obj = json.loads(data)
        except (ValueError, RecursionError):
            raise InvalidEntryError("entry bytes are not JSON") from None
        if not isinstance(obj, dict) or obj.keys() not in (
            ENTRY_FIELDS,
            ENTRY_FIELDS_RULE,
            ENTRY_FIELDS_V1,
        ):
            raise InvalidEntryError("entry bytes do not hold exactly the entry fields")
        fields = dict(obj)
        fields["time"] = parse_time(fields["time"])
        fields["structured"] = obj.keys() != ENTRY_FIELDS_V1
        entry = cls(**fields)
        if entry.to_bytes() != data:
            raise InvalidEntryError("entry bytes are not in canonical form")
        return entry


def encode_entry(
    *,
    seq: int,
    time: datetime,
    actor: str,
    role: str,
    action: str,
    resource: str,
    outcome: str,
    reason: str,
    policy_hash: str | None,
    request_digest: str | None,
    prev: str,
    node_id: str,
    partner: str | None = None,
    schema: str | None = None,
    epsilon_micro: int | None = None,
    rule: str | None = None,
) -> bytes:
    """Validate the fields and return the entry's canonical bytes (format 2).

    Raises InvalidEntryError if a field is malformed.
    """
    return AuditEntry(
        seq=seq,
        time=time,
        actor=actor,
        role=role,
        action=action,
        resource=resource,
        outcome=outcome,
        reason=reason,
        policy_hash=policy_hash,
        request_digest=request_digest,
        prev=prev,
        node_id=node_id,
        partner=partner,
        schema=schema,
        epsilon_micro=epsilon_micro,
        rule=rule,
    ).to_bytes()


def entry_leaf_hash(data: bytes) -> bytes:
    """Leaf hash of canonical entry bytes, as stored; hashes the bytes as given."""
    return merkle.leaf_hash(data)


def prev_for(previous_leaf_hash: bytes | None) -> str:
    """The ``prev`` value for the next entry, given the last entry's leaf hash (None if none)."""
    if previous_leaf_hash is None:
        return GENESIS_PREV
    if len(previous_leaf_hash) != merkle.HASH_SIZE:
        raise InvalidEntryError("previous leaf hash must be 32 bytes")
    return previous_leaf_hash.hex()
