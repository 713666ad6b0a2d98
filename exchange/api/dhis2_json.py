"""A DHIS2 data value set decoded straight into columns: msgspec, into slotted structs.

A set of 100,000 report rows is 400,000 data values and about 50 MB of JSON; decoded into
dicts by ``orjson`` and then checked by ``strict_json``, it took most of an import's time.
Here each data value becomes a struct of DHIS2's data value fields (no dict, nothing for the
garbage collector to track), and msgspec refuses in C any other field and any value of
another kind than the fast path reads.

The struct is made from the node's mapping: a data element, organisation unit or combo must
be one the mapping knows (a ``Literal`` of its identifiers), so msgspec hands back the
mapping's own string, whose hash is already known, instead of 1.6 million new strings that
every later lookup would hash again. An identifier the mapping does not know, a number
anywhere (DHIS2 sends values as text), a ``\\u`` escape or a repeated key: the fast path
returns None, and the caller reads the body with ``strict_json`` and
``dhis2_values.from_json``, which say exactly what is wrong; both read a set alike.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import Any, Literal, cast

import msgspec

from exchange.api import strict_json
from exchange.formats.dhis2 import IdSchemes
from exchange.formats.dhis2_mapping import DhisMapping
from exchange.formats.dhis2_values import DataValues

#: What a field other than an identifier may hold here. No numbers: then no integer can be
#: longer than the strict decoder allows, and DHIS2 sends every value as text.
Text = str | bool | None
_UNSET: Any = msgspec.UNSET
_Unset = msgspec.UnsetType

#: The data value fields DHIS2's Web API documents (JSON data value format), in its order.
VALUE_FIELDS = (
    "dataElement",
    "period",
    "orgUnit",
    "categoryOptionCombo",
    "attributeOptionCombo",
    "value",
    "storedBy",
    "created",
    "lastUpdated",
    "comment",
    "followup",
    "deleted",
)
#: The set's fields: its values, and the fields whose values a data value may leave to it.
SET_FIELDS = ("dataValues", "dataSet", "completeDate", "period", "orgUnit", "attributeOptionCombo")
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
_IGNORED = tuple(f for f in VALUE_FIELDS if f not in _READ)

_decoders: dict[tuple[int, IdSchemes], tuple[DhisMapping, msgspec.json.Decoder[Any]]] = {}


def _known(table: Mapping[str, object]) -> Any:
    """An identifier of ``table``, as a type msgspec decodes to the table's own key."""
    return cast(Any, Literal)[tuple(table)] if table else str


def decoder(mapping: DhisMapping, schemes: IdSchemes) -> msgspec.json.Decoder[Any]:
    """The decoder of a set this mapping can place under these schemes (made once each)."""
    key = (id(mapping), schemes)
    found = _decoders.get(key)
    if found is not None and found[0] is mapping:
        return found[1]
    identifiers = {
        "dataElement": mapping.data_elements[schemes.data_element],
        "orgUnit": mapping.org_units[schemes.org_unit],
        "categoryOptionCombo": mapping.category_option_combos[schemes.category_option_combo],
        "attributeOptionCombo": mapping.attribute_option_combos[schemes.other],
    }
    value = msgspec.defstruct(
        "DataValue",
        [
            (f, (_known(identifiers[f]) if f in identifiers else Text) | _Unset, msgspec.UNSET)
            for f in VALUE_FIELDS
        ],
        forbid_unknown_fields=True,
        gc=False,
    )
    data_value_set = msgspec.defstruct(
        "DataValueSet",
        [("dataValues", list[value] | _Unset, msgspec.UNSET)]  # type: ignore[valid-type]
        + [(f, Text | _Unset, msgspec.UNSET) for f in SET_FIELDS[1:]],
        forbid_unknown_fields=True,
    )
    made: msgspec.json.Decoder[Any] = msgspec.json.Decoder(data_value_set)
    if len(_decoders) >= 16:  # mappings change rarely; old ones go
        _decoders.clear()
    _decoders[key] = (mapping, made)
    return made


def data_values(body: bytes, mapping: DhisMapping, schemes: IdSchemes) -> DataValues | None:
    """The set in ``body`` as ``dhis2_values.from_json`` reads it; None when the fast path
    cannot vouch for it."""
    if b"\\" in body and b"\\u" in body:  # a lone surrogate would decode silently
        return None
    try:
        document = decoder(mapping, schemes).decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    values = document.dataValues if isinstance(document.dataValues, list) else []
    n = len(values)
    keys = sum(getattr(document, f) is not _UNSET for f in SET_FIELDS)
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
    if not _all_keys_counted(body, keys, values):
        return None  # a key given twice, or text the count cannot place: the strict path
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


def _all_keys_counted(body: bytes, keys: int, values: list[Any]) -> bool:
    """Whether ``keys``, the fields decoded, are all the keys the text gives: a key given
    twice decodes once, so it is one short.

    In JSON a colon ends a key or lies inside a string, so the text's colons bound its keys
    from above; usually (no colon in any string) they are equal, and one C count of a byte
    says so. Else ``strict_json.screen`` counts the places a key can end (a quote, a colon),
    which a timestamp's colons are not. The fields read are counted first: when they account
    for every key, no ignored field was given (the usual set) and those need no count."""
    colons = body.count(b":")
    if keys != colons:
        for field in _IGNORED:
            keys += len(values) - operator.countOf(map(operator.attrgetter(field), values), _UNSET)
    return keys == colons or keys == strict_json.screen(body)
