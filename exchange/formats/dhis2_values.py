"""A DHIS2 data value set, JSON or CSV, read into columns: one list per field.

A set of 100,000 report rows is 400,000 data values, so nothing here walks them one by one
in Python when it can help it: fields come out of the decoded objects with ``map`` over
``dict.get``, the set's own ``period``/``orgUnit``/``attributeOptionCombo`` fill a value's
missing ones as a default of that same ``get``, and a CSV is split with ``csv.reader`` and
transposed with ``zip``.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from itertools import repeat, zip_longest
from typing import Any

#: DHIS2's CSV columns, in order (its Web API documentation, "CSV data value format").
CSV_COLUMNS = (
    "dataelement",
    "period",
    "orgunit",
    "catoptcombo",
    "attroptcombo",
    "value",
    "storedby",
    "lastupdated",
    "comment",
    "followup",
    "deleted",
)


class DataValueSetError(ValueError):
    """The body is not a data value set at all (not a conflict of one of its values)."""


@dataclass(frozen=True)
class DataValues:
    """The set's values as columns of equal length; a missing field is None."""

    data_set: object
    data_element: list[Any]
    period: list[Any]
    org_unit: list[Any]
    category_option_combo: list[Any]
    attribute_option_combo: list[Any]
    value: list[Any]
    deleted: list[Any]

    @property
    def count(self) -> int:
        return len(self.data_element)


def from_json(document: object) -> DataValues:
    """A decoded JSON data value set; raises DataValueSetError when it is not one."""
    if not isinstance(document, dict):
        raise DataValueSetError(
            "the body must be a JSON object: a data value set with 'dataValues'"
        )
    values = document.get("dataValues", [])
    if not isinstance(values, list):
        raise DataValueSetError("'dataValues' must be an array of data values")
    if values and set(map(type, values)) != {dict}:
        raise DataValueSetError("each element of 'dataValues' must be an object")
    get = dict.get

    def column(name: str, default: object = None) -> list[Any]:
        return list(map(get, values, repeat(name), repeat(default)))

    return DataValues(
        data_set=document.get("dataSet"),
        data_element=column("dataElement"),
        period=column("period", document.get("period")),
        org_unit=column("orgUnit", document.get("orgUnit")),
        category_option_combo=column("categoryOptionCombo"),
        attribute_option_combo=column("attributeOptionCombo", document.get("attributeOptionCombo")),
        value=column("value"),
        deleted=column("deleted", False),
    )


def from_csv(text: str) -> DataValues:
    """DHIS2's CSV form; the header row is optional (a first row naming ``dataelement``)."""
    try:
        rows = [row for row in csv.reader(io.StringIO(text, newline="")) if row]
    except csv.Error as exc:
        raise DataValueSetError(f"the CSV cannot be read: {exc}") from None
    if rows and rows[0] and rows[0][0].strip().lower() in ("dataelement", "data_element"):
        rows = rows[1:]
    width = len(CSV_COLUMNS)
    if any(len(row) > width for row in rows):
        raise DataValueSetError(
            f"a CSV row has more than {width} columns; DHIS2's are {','.join(CSV_COLUMNS)}"
        )
    columns = list(zip_longest(*rows, fillvalue="")) if rows else []
    columns += [()] * (width - len(columns))
    n = len(rows)

    def column(i: int) -> list[Any]:
        found: list[Any] = list(columns[i]) if columns[i] else [""] * n
        if "" in found:  # an empty cell is a field not given
            found = [v or None for v in found]
        return found

    deleted = column(10)
    return DataValues(
        data_set=None,
        data_element=column(0),
        period=column(1),
        org_unit=column(2),
        category_option_combo=column(3),
        attribute_option_combo=column(4),
        value=column(5),
        deleted=[v is not None and v.strip().lower() == "true" for v in deleted]
        if any(deleted)
        else [False] * n,
    )
