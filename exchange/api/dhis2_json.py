"""A DHIS2 data value set decoded straight into columns: msgspec, into slotted structs.

A set of 100,000 report rows is 400,000 data values and about 50 MB of JSON; decoded into
dicts by ``orjson`` and then checked by ``strict_json``, it took most of an import's time.
Here each data value becomes a struct of DHIS2's data value fields (no dict, nothing for the
garbage collector to track), and msgspec refuses in C any other field and any value that is
not a JSON scalar. Duplicate keys, ``\\u`` escapes and over-long numbers are dealt with as
``exchange.api.json_rows`` deals with them. Whatever the fast path cannot vouch for, it
returns None for, and the caller reads the body with ``strict_json`` and
``dhis2_values.from_json``, which say exactly what is wrong; both read a set alike.
"""

from __future__ import annotations

import operator
from typing import Any

import msgspec

from exchange.api import strict_json
from exchange.formats.dhis2_values import DataValues

Scalar = str | int | float | bool | None
_UNSET: Any = msgspec.UNSET


class DataValue(msgspec.Struct, forbid_unknown_fields=True, gc=False):  # DHIS2's field names
    """One data value: the fields DHIS2's Web API documents for it (JSON data value format)."""

    dataElement: Scalar | msgspec.UnsetType = msgspec.UNSET
    period: Scalar | msgspec.UnsetType = msgspec.UNSET
    orgUnit: Scalar | msgspec.UnsetType = msgspec.UNSET
    categoryOptionCombo: Scalar | msgspec.UnsetType = msgspec.UNSET
    attributeOptionCombo: Scalar | msgspec.UnsetType = msgspec.UNSET
    value: Scalar | msgspec.UnsetType = msgspec.UNSET
    storedBy: Scalar | msgspec.UnsetType = msgspec.UNSET
    created: Scalar | msgspec.UnsetType = msgspec.UNSET
    lastUpdated: Scalar | msgspec.UnsetType = msgspec.UNSET
    comment: Scalar | msgspec.UnsetType = msgspec.UNSET
    followup: Scalar | msgspec.UnsetType = msgspec.UNSET
    deleted: Scalar | msgspec.UnsetType = msgspec.UNSET


class DataValueSet(msgspec.Struct, forbid_unknown_fields=True):
    """The set: its values, and the fields whose values a data value may leave to it."""

    dataValues: list[DataValue] | msgspec.UnsetType = msgspec.UNSET
    dataSet: Scalar | msgspec.UnsetType = msgspec.UNSET
    completeDate: Scalar | msgspec.UnsetType = msgspec.UNSET
    period: Scalar | msgspec.UnsetType = msgspec.UNSET
    orgUnit: Scalar | msgspec.UnsetType = msgspec.UNSET
    attributeOptionCombo: Scalar | msgspec.UnsetType = msgspec.UNSET


_DECODER = msgspec.json.Decoder(DataValueSet)
#: Data value fields the node reads, with what stands in for an absent one (None: the set's).
_READ = {
    "dataElement": None,
    "period": None,
    "orgUnit": None,
    "categoryOptionCombo": None,
    "attributeOptionCombo": None,
    "value": None,
    "deleted": False,
}
#: Data value fields the node ignores, counted only (for the keys check).
_IGNORED = tuple(f for f in DataValue.__struct_fields__ if f not in _READ)


def data_values(body: bytes) -> DataValues | None:
    """The set in ``body`` as ``dhis2_values.from_json`` reads it; None when the fast path
    cannot vouch for it."""
    ends = strict_json.screen(body)
    if ends is None:
        return None
    try:
        document = _DECODER.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    values = document.dataValues if isinstance(document.dataValues, list) else []
    n = len(values)
    keys = sum(getattr(document, f) is not _UNSET for f in DataValueSet.__struct_fields__)
    columns: dict[str, list[Any]] = {}
    for field, absent_is in _READ.items():
        column = list(map(operator.attrgetter(field), values))
        absent = operator.countOf(column, _UNSET)
        keys += n - absent
        if absent:
            default = getattr(document, field, absent_is)
            default = absent_is if default is _UNSET else default
            column = (
                [default] * n if absent == n else [default if v is _UNSET else v for v in column]
            )
        columns[field] = column
    # The text's key ends bound the keys given from above, so if the fields read account
    # for all of them, no ignored field was given (the usual set): no need to count those.
    if keys != ends:
        for field in _IGNORED:
            keys += n - operator.countOf(map(operator.attrgetter(field), values), _UNSET)
    if keys != ends:
        return None  # a key given twice, or key-like text inside a string: the strict path
    return DataValues(
        data_set=None if document.dataSet is _UNSET else document.dataSet,
        data_element=columns["dataElement"],
        period=columns["period"],
        org_unit=columns["orgUnit"],
        category_option_combo=columns["categoryOptionCombo"],
        attribute_option_combo=columns["attributeOptionCombo"],
        value=columns["value"],
        deleted=columns["deleted"],
    )
