"""Report rows decoded straight into columns: msgspec, into a struct made from the schema.

A JSON Lines upload of 100,000 rows through ``orjson`` makes 100,000 dicts before a column
is picked out of them. msgspec decodes each line into a slotted struct whose fields are the
schema's (no dict, nothing for the garbage collector to track), and refuses in C any other
field, any value that is not a JSON scalar, and any line that is not an object. What every
fast decoder lets through is checked as ``strict_json`` checks it: duplicate keys (the last
wins), by comparing the keys decoded with the places in the text where a key can end;
``\\u`` escapes (lone surrogates) and over-long numbers, by not taking the fast path at all.

Whatever the fast path cannot vouch for, it returns None for, and the caller decodes the
lines one by one with ``strict_json``, which names the line and the fault.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from functools import cache
from typing import Any

import msgspec

from exchange.api import strict_json
from schemas.columns import Column
from schemas.model import ReportSchema
from schemas.validation import JsonColumns

#: What a field of a flat row may hold; absent is ``UNSET``, so absent and null differ.
Scalar = str | int | float | bool | None


@cache
def _decoder(names: tuple[str, ...]) -> tuple[msgspec.json.Decoder[Any], tuple[str, ...]]:
    """A decoder of one row with fields ``names``, and the struct's attribute for each.

    Attributes are ``f0``, ``f1``, ... renamed to the field names, so any name works."""
    attributes = tuple(f"f{i}" for i in range(len(names)))
    row = msgspec.defstruct(
        "Row",
        [(a, Scalar | msgspec.UnsetType, msgspec.UNSET) for a in attributes],
        rename=dict(zip(attributes, names, strict=True)),
        forbid_unknown_fields=True,
        gc=False,
    )
    return msgspec.json.Decoder(row), attributes


def columns_of_lines(schema: ReportSchema, lines: Sequence[str]) -> JsonColumns | None:
    """JSON Lines, each one flat row object (JSON whitespace around it, a line break
    included, is allowed), as columns; None unless every line is one that
    ``strict_json.loads`` accepts and the fast path can vouch for (a blank line is not)."""
    ends = strict_json.screen("\n".join(lines).encode())
    if ends is None:
        return None
    decoder, attributes = _decoder(tuple(f.name for f in schema.fields))
    try:
        rows = list(map(decoder.decode, lines))
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    n = len(rows)
    unset = msgspec.UNSET
    names: set[str] = set()
    columns: dict[str, Column] = {}
    keys = 0
    for field, attribute in zip(schema.fields, attributes, strict=True):
        column: list[object] = list(map(operator.attrgetter(attribute), rows))
        absent = operator.countOf(column, unset)
        if absent < n:
            names.add(field.name)
        if absent == n:
            column = [None] * n
        elif absent:
            column = [None if v is unset else v for v in column]
        keys += n - absent
        columns[field.name] = column
    if keys != ends:
        return None  # a key given twice, or key-like text inside a string: the strict path
    return JsonColumns(frozenset(names), columns, n)
