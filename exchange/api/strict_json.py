"""Decoding a request's JSON strictly: what the standard library lets through, refused.

``json.loads`` accepts duplicate keys (the last wins, silently), integer literals of any
length (thousands of digits cost quadratic time, and past 4,300 raise a bare ``ValueError``),
``NaN`` and ``Infinity`` (not JSON), lone UTF-16 surrogates from ``\\ud800`` escapes (which
later fail to encode, anywhere the text is stored or echoed) and nesting deep enough to
exhaust the recursion limit (the C scanner stops at the interpreter's recursion limit, about
a thousand levels, before using memory out of proportion). Each becomes a ``StrictJsonError``
that says what is wrong, as a coded ``Message`` the problem handler renders in the caller's
language (the decoder's own reason for malformed JSON stays in Python's English words).

The common body pays for little: the duplicate check is one C-level ``dict`` per object,
the integer bound runs only when the body holds a long run of digits, and the surrogate
walk only when the body holds a ``\\u`` escape at all.
"""

from __future__ import annotations

import json
import re
from typing import Any

from schemas.errors import Message, Param

#: An int64 has 19 digits; a longer literal is no count this node could store.
MAX_INT_DIGITS = 19

_LONG_DIGITS = re.compile(rb"[0-9]{%d}" % (MAX_INT_DIGITS + 1))
_SURROGATE = re.compile("[\ud800-\udfff]")


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
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StrictJsonError("json_not_utf8", byte=exc.start) from None
    long_digits = _LONG_DIGITS.search(body) is not None
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
