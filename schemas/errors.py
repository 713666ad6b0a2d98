"""The exception tree every layer raises; ``exchange.problems`` maps each branch to HTTP.

    ExchangeError                 anything the caller can be told about, safely
    ├── InvalidInputError         the request is malformed or its values are wrong (422)
    ├── NotFoundError             no such thing, or not visible to this caller (404)
    ├── ConflictError             contradicts what was stored before (409 or 422)
    ├── AuthenticationError       no credential, or one we do not accept (401)
    ├── ForbiddenError            authenticated, but not allowed to do this (403)
    └── BudgetExhaustedError      allowed, but the privacy budget cannot pay for it (429)

Messages are written for the person on the other end: they never contain secrets.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field


class ExchangeError(Exception):
    """Base of every error whose message may be shown to the caller."""


class InvalidInputError(ExchangeError):
    """The request is malformed or carries invalid values."""


class NotFoundError(ExchangeError):
    """The thing asked for does not exist or is not visible to this caller."""


class ConflictError(ExchangeError):
    """The request contradicts something stored earlier."""


class AuthenticationError(ExchangeError):
    """The caller is not who it must be: no, unknown, revoked or invalid credentials."""


class ForbiddenError(ExchangeError):
    """The caller is known but may not do this."""


class BudgetExhaustedError(ExchangeError):
    """The privacy budget left cannot pay for the release asked for."""


def N_(message: str) -> str:
    """Mark a sentence for the translators' catalogs (``babel extract -k N_``); returns it."""
    return message


#: The closed set of row-error codes, each with its English sentence. Placeholders are
#: ``str.format`` names: ``field`` and ``fields`` are filled with the schema's labels, numbers
#: are formatted for the reader's language; ``exchange.i18n`` translates the rest.
ROW_MESSAGES: dict[str, str] = {
    "ragged_row": N_("this row has {cells} values; the header has {expected}"),
    "value_required": N_("{field} needs a value"),
    "not_an_integer": N_("{field} must be a whole number"),
    "not_a_json_integer": N_("{field} must be a JSON integer, not {json_type}"),
    "negative_count": N_("{field} cannot be negative"),
    "above_maximum": N_(
        "{field} is more than {maximum}, the most one cell may state for this measure "
        "(the schema's maximum; it keeps every total exact)"
    ),
    "not_text": N_("{field} must be text, not {json_type}"),
    "not_in_codelist": N_("{field} is not a code of its list; allowed: {allowed}"),
    "unknown_area": N_("{field} is not an area code of this node's gazetteer"),
    "not_a_week": N_("{field} is not an epi week; write it as YYYY-Www, e.g. 2026-W05"),
    "week_year_out_of_range": N_("{field}: the year {year} is out of range"),  # year: text
    "no_such_week": N_("{field}: year {year} has {weeks} weeks, so week {week} does not exist"),
    "not_a_date": N_("{field} must be a date written YYYY-MM-DD"),
    "no_such_date": N_("{field}: no such calendar date"),
    "text_too_long": N_("{field} is longer than {limit} characters"),
    "control_character": N_(
        "{field} holds the control character {character}; text must be printable"
    ),
    "duplicate_cell": N_("the same cell as row {first_row}; a report states each cell once"),
    "nested_area": N_(
        "{value} lies inside {ancestor}, which row {other_row} states for the same {fields}; "
        "one person would be counted twice. State {ancestor} or the areas inside it, not both"
    ),
}

Param = str | int | tuple[str, ...]


@dataclass(frozen=True)
class RowError:
    """One bad value, with a stable ``code`` from ``ROW_MESSAGES`` and the sentence's params.

    ``row`` is the file's own numbering: a CSV's line (the header is line 1, so the first
    data row is 2), a JSON report's 1-based index in its ``rows`` array. ``field`` is a field
    name, ``a+b`` for a combination of fields, or ``*`` for the row as a whole. Params named
    ``field``/``fields`` hold field names, shown as the schema's labels.
    """

    row: int
    field: str
    value: str
    code: str
    params: Mapping[str, Param] = dataclass_field(default_factory=dict)

    @property
    def reason(self) -> str:
        """The English sentence, with field names as they are (no schema at hand)."""
        return render(self, ROW_MESSAGES[self.code], lambda name: name, _english_number)


def _english_number(number: int) -> str:
    return f"{number:,}"


def render(
    error: RowError,
    template: str,
    label: Callable[[str], str],
    number: Callable[[int], str],
) -> str:
    """Fill ``template`` for ``error``: field names through ``label``, integers through ``number``."""
    values: dict[str, str] = {"value": error.value}
    for key, param in error.params.items():
        if isinstance(param, tuple):
            values[key] = ", ".join(map(label, param))
        elif isinstance(param, int):
            values[key] = number(param)
        else:
            values[key] = param
    values["field"] = label(error.field)
    return template.format(**values)
