"""DHIS2 import conflicts: what ``conflicts[]`` of an import summary holds, bounded.

DHIS2 lists one conflict per offending object and error code, with the indexes of the data
values it concerns (``indexes``), so 10,000 values of an unknown organisation unit are one
conflict, not 10,000. A set wrong in many different ways still lists at most
``MAX_CONFLICTS`` conflicts, each with at most ``MAX_INDEXES`` indexes; the counts of what
was left out are kept, so the summary says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

MAX_CONFLICTS = 100
MAX_INDEXES = 1_000


@dataclass
class Conflict:
    subject: str  # DHIS2's ``object``: the offending identifier or value
    property: str
    error_code: str
    value: str  # a sentence that names the offending value
    indexes: list[int] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return {
            "object": self.subject,
            "objects": {self.property: self.subject},
            "value": self.value,
            "errorCode": self.error_code,
            "property": self.property,
            "indexes": self.indexes,
        }


class ConflictLog:
    """Conflicts by (error code, property, object), in the order first found."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str, str], Conflict] = {}
        self.left_out = 0  # conflicts past MAX_CONFLICTS
        self.rejected: set[int] = set()

    def __bool__(self) -> bool:
        return bool(self._by_key) or self.left_out > 0

    def add(
        self,
        code: str,
        prop: str,
        obj: object,
        sentence: str,
        indexes: Sequence[int] = (),
    ) -> None:
        key = (code, prop, str(obj))
        conflict = self._by_key.get(key)
        if conflict is None:
            if len(self._by_key) >= MAX_CONFLICTS:
                self.left_out += 1
                return
            conflict = self._by_key[key] = Conflict(str(obj)[:200], prop, code, sentence)
        room = MAX_INDEXES - len(conflict.indexes)
        conflict.indexes.extend(list(indexes)[:room] if room > 0 else [])
        if len(self.rejected) < MAX_INDEXES:
            self.rejected.update(list(indexes)[: MAX_INDEXES - len(self.rejected)])

    def conflicts(self) -> list[Conflict]:
        return list(self._by_key.values())
