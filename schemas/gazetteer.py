"""A node's gazetteer: the admin areas its reports may name (ISO 3166-2 or OCHA P-codes).

P-codes have irregular formats (``HT0811-07``, ``BDI014006``), so codes are checked against
the gazetteer, never against a pattern. Level 0 is the country; each area names its parent,
which is what lets the policy layer roll admin level 2 up to level 1 or to national totals.

Two areas *overlap* when one contains the other (or they are the same): a province and its
districts count the same people, so the node never keeps current rows for both (see
``nodes.reports``). ``MAX_AREAS`` bounds the tree, which bounds how many stored cells can add
up to one released value (``schemas.model.largest_sum``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from functools import cached_property

import pycountry
from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_AREAS = 100_000  # more than any country's admin-4 P-codes (the Philippines: ~42,000)


class Area(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(min_length=1, max_length=32)
    name: str = Field(min_length=1)
    level: int = Field(ge=0, le=5)
    parent: str | None = None


class Gazetteer(BaseModel):
    """A tree of areas with exactly one root (the country)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    areas: tuple[Area, ...] = Field(max_length=MAX_AREAS)

    @model_validator(mode="after")
    def _is_a_tree(self) -> Gazetteer:
        by_code: dict[str, Area] = {}
        for area in self.areas:
            if area.code in by_code:
                raise ValueError(f"area {area.code} is listed twice")
            by_code[area.code] = area
        roots = [a.code for a in self.areas if a.parent is None]
        if len(roots) != 1:
            raise ValueError(f"a gazetteer has exactly one root area (the country), found {roots}")
        for area in self.areas:
            if area.parent is None:
                if area.level != 0:
                    raise ValueError(f"root area {area.code} must have level 0")
                continue
            parent = by_code.get(area.parent)
            if parent is None:
                raise ValueError(f"area {area.code} names unknown parent {area.parent}")
            if parent.level != area.level - 1:
                raise ValueError(
                    f"area {area.code} (level {area.level}) has parent {parent.code} "
                    f"at level {parent.level}; a parent is exactly one level up"
                )
        return self

    @cached_property
    def by_code(self) -> dict[str, Area]:
        return {a.code: a for a in self.areas}

    @cached_property
    def codes(self) -> frozenset[str]:
        return frozenset(self.by_code)

    @property
    def root(self) -> Area:
        return next(a for a in self.areas if a.parent is None)

    def at_level(self, level: int) -> tuple[str, ...]:
        """Codes of one admin level, sorted: a public key set for release."""
        return tuple(sorted(a.code for a in self.areas if a.level == level))

    @cached_property
    def max_level(self) -> int:
        return max(a.level for a in self.areas)

    def ancestor(self, code: str, level: int) -> str:
        """The area at ``level`` that contains ``code`` (itself if already at that level)."""
        area = self.by_code[code]
        if area.level < level:
            raise ValueError(f"area {code} is at level {area.level}, above level {level}")
        while area.level > level:
            assert area.parent is not None
            area = self.by_code[area.parent]
        return area.code

    @cached_property
    def _ancestors(self) -> dict[str, tuple[str, ...]]:
        out: dict[str, tuple[str, ...]] = {}
        for area in sorted(self.areas, key=lambda a: a.level):
            out[area.code] = () if area.parent is None else (area.parent, *out[area.parent])
        return out

    def ancestors(self, code: str) -> tuple[str, ...]:
        """The areas that contain ``code``, nearest first, up to the country (not itself)."""
        return self._ancestors[code]

    @cached_property
    def _descendants(self) -> dict[str, tuple[str, ...]]:
        inside: dict[str, list[str]] = {code: [] for code in self.by_code}
        for code, above in self._ancestors.items():
            for ancestor in above:
                inside[ancestor].append(code)
        return {code: tuple(codes) for code, codes in inside.items()}

    def overlapping(self, codes: Iterable[str]) -> list[tuple[str, str]]:
        """Every ``(code, other)`` with ``code`` in ``codes`` and ``other`` the same area, one
        that contains it, or one inside it: the areas whose rows count the same people."""
        pairs: list[tuple[str, str]] = []
        for code in set(codes):
            pairs.append((code, code))
            pairs.extend((code, other) for other in self._ancestors[code])
            pairs.extend((code, other) for other in self._descendants[code])
        return pairs

    @classmethod
    def from_csv_text(cls, text: str) -> Gazetteer:
        """Read ``code,name,level,parent`` rows (parent empty for the country)."""
        reader = csv.DictReader(io.StringIO(text))
        missing = {"code", "name", "level", "parent"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"gazetteer CSV lacks columns {sorted(missing)}")
        areas = [
            Area(
                code=row["code"].strip(),
                name=row["name"].strip(),
                level=int(row["level"]),
                parent=row["parent"].strip() or None,
            )
            for row in reader
        ]
        return cls(areas=tuple(areas))

    def to_csv_text(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["code", "name", "level", "parent"])
        for a in self.areas:
            writer.writerow([a.code, a.name, a.level, a.parent or ""])
        return out.getvalue()

    @classmethod
    def from_iso3166(cls, alpha2: str) -> Gazetteer:
        """Build a gazetteer from ISO 3166-2 subdivisions of a country (data from ``pycountry``)."""
        country = pycountry.countries.get(alpha_2=alpha2.upper())
        if country is None:
            raise ValueError(f"{alpha2} is not an ISO 3166-1 alpha-2 country code")
        subdivisions = list(pycountry.subdivisions.get(country_code=country.alpha_2) or ())  # type: ignore[no-untyped-call]
        parents = {s.code: s.parent_code for s in subdivisions}

        def level(code: str) -> int:
            parent = parents.get(code)
            return 1 if parent is None else 1 + level(parent)

        areas: list[Area] = [Area(code=country.alpha_2, name=country.name, level=0)]
        for s in sorted(subdivisions, key=lambda s: (level(s.code), s.code)):
            areas.append(
                Area(
                    code=s.code,
                    name=s.name,
                    level=level(s.code),
                    parent=s.parent_code or country.alpha_2,
                )
            )
        return cls(areas=tuple(areas))
