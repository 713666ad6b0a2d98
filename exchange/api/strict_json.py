"""Decoding a request's JSON strictly: what the standard library lets through, refused.

``json.loads`` accepts duplicate keys (the last wins, silently), integer literals of any
length (thousands of digits cost quadratic time, and past 4,300 raise a bare ``ValueError``),
``NaN`` and ``Infinity`` (not JSON), lone UTF-16 surrogates from ``\\ud800`` escapes (which
later fail to encode, anywhere the text is stored or echoed) and nesting deep enough to
exhaust the recursion limit (the C scanner stops at the interpreter's recursion limit, about
a thousand levels, before using memory out of proportion). Each becomes a ``StrictJsonError``
that says what is wrong, as a coded ``Message`` the problem handler renders in the caller's
language (the decoder's own reason for malformed JSON stays in Python's English words).

The common body pays for little: it is decoded by ``orjson`` (several times faster than the
standard library), and taken only when nothing above can be in it: no ``\\u`` escape, no long
run of digits, and as many keys decoded as the text has places where a key could end (so
none was given twice). Anything else, and anything ``orjson`` refuses, is decoded again by
the standard library's strict path, which names the fault.
"""

from __future__ import annotations

import json
import re
from itertools import chain
from typing import Any

import orjson

from schemas.errors import Message, Param

#: An int64 has 19 digits; a longer literal is no count this node could store.
MAX_INT_DIGITS = 19

_SURROGATE = re.compile("[\ud800-\udfff]")
#: JSON's whitespace (RFC 8259). Where a key can end: its closing quote, whitespace, then a
#: colon. A string value can hold this text too (``"a\\": b"``), which only makes the count
#: larger, never smaller than the keys.
_JSON_SPACE = b" \t\r\n"
#: Deeper than this, the fast path defers to the strict one (whose limit is the interpreter's
#: recursion limit), so both refuse the same documents.
_FAST_DEPTH = 256


class StrictJsonError(ValueError):
    """The body is not JSON this node reads; ``message`` says why and is safe to show."""

    def __init__(self, code: str, **params: Param) -> None:
        self.message = Message.of(code, **params)
        super().__init__(self.message.english())


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        key = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise StrictJsonError("json_duplicate_key", key=_shown(key))
    return document


def _integer(literal: str) -> int:
    if len(literal.lstrip("-")) > MAX_INT_DIGITS:
        raise StrictJsonError("json_long_integer", digits=len(literal), maximum=MAX_INT_DIGITS)
    return int(literal)


def _constant(name: str) -> float:
    raise StrictJsonError("json_not_a_value", name=name)


def _shown(text: str, limit: int = 40) -> str:
    """A key or value safe to echo: surrogates escaped, cut to ``limit`` characters."""
    safe = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return repr(safe[:limit] + ("..." if len(safe) > limit else ""))


def loads(body: bytes) -> Any:
    """Decode UTF-8 JSON bytes, or raise ``StrictJsonError``."""
    ends = screen(body)
    if ends is not None:
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            pass  # the strict path says what is wrong, in the words its errors use
        else:
            if _keys(document, _FAST_DEPTH) == ends:
                return document
    return _strict_loads(body)


#: Every digit as ``9``, every other byte as a space: a long run of digits is a run of nines.
_DIGITS_AS_NINE = bytes(0x39 if 0x30 <= i <= 0x39 else 0x20 for i in range(256))
_LONG_RUN = b"9" * (MAX_INT_DIGITS + 1)


#: Every digit as ``9``, every other byte as itself: a long number is a long run of nines.
_NINES = bytes(0x39 if 0x30 <= i <= 0x39 else i for i in range(256))


def screen(body: bytes) -> int | None:
    """What a fast decoder must be checked for, in one C pass over ``body``: None when it
    holds a ``\\u`` escape (a lone surrogate decodes silently) or a run of more than
    ``MAX_INT_DIGITS`` digits; else how many places a key could end (a quote, optional JSON
    whitespace, a colon), which a decoded document must match key for key, or it repeated
    one. With the whitespace deleted, each such place is a ``":``; the deletion can only join
    runs of digits (more documents left to the strict path, never fewer)."""
    squeezed = body.translate(_NINES, _JSON_SPACE)
    if b"\\u" in squeezed or _LONG_RUN in squeezed:
        return None
    return squeezed.count(b'":')


def has_long_digits(body: bytes) -> bool:
    """Whether ``body`` holds more than ``MAX_INT_DIGITS`` digits in a row (in a number or
    not): a C-level ``translate`` and substring search, ten times faster than a regex."""
    return _LONG_RUN in body.translate(_DIGITS_AS_NINE)


def _keys(document: Any, depth: int) -> int:
    """How many object keys ``document`` holds, all levels; -1 past ``depth`` levels.

    A list of flat objects (the rows of a push) is counted in C: one ``len`` per object and
    one look at the types of all their values.
    """
    if depth == 0:
        return -1
    if isinstance(document, dict):
        values: list[Any] = list(document.values())
        count = len(document)
    elif isinstance(document, list):
        if set(map(type, document)) == {dict}:
            count = sum(map(len, document))
            values = list(chain.from_iterable(map(dict.values, document)))
        else:
            count, values = 0, document
    else:
        return 0
    if not {dict, list}.intersection(map(type, values)):
        return count
    for value in values:
        if isinstance(value, dict | list):
            inner = _keys(value, depth - 1)
            if inner < 0:
                return -1
            count += inner
    return count


def _strict_loads(body: bytes) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StrictJsonError("json_not_utf8", byte=exc.start) from None
    long_digits = has_long_digits(body)
    try:
        document = json.loads(
            text,
            object_pairs_hook=_object,
            parse_constant=_constant,
            parse_int=_integer if long_digits else None,
        )
    except RecursionError:
        raise StrictJsonError("json_too_deep") from None
    except json.JSONDecodeError as exc:
        raise StrictJsonError(  # the decoder's reason stays in Python's words
            "json_malformed", reason=exc.msg, line=exc.lineno, column=exc.colno
        ) from None
    except StrictJsonError:
        raise
    except ValueError as exc:  # an over-long number the bound did not catch (a float)
        raise StrictJsonError("json_bad_number", reason=str(exc)) from None
    if "\\u" in text:
        _check_surrogates(document)
    return document


def _check_surrogates(document: Any) -> None:
    """Walk every string (keys too): only run when the body holds a ``\\u`` escape."""
    stack: list[Any] = [document]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            for key in value:
                if _SURROGATE.search(key):
                    raise _surrogate(key)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, str) and _SURROGATE.search(value):
            raise _surrogate(value)


def _surrogate(text: str) -> StrictJsonError:
    return StrictJsonError("json_lone_surrogate", text=_shown(text))
