"""The exception tree every layer raises; ``exchange.api.problems`` maps each branch to HTTP.

    ExchangeError                 anything the caller can be told about, safely
    ├── InvalidInputError         the request is malformed or its values are wrong (422)
    ├── NotFoundError             no such thing, or not visible to this caller (404)
    ├── ConflictError             contradicts what was stored before (409 or 422)
    ├── BudgetExhaustedError      allowed, but the privacy budget cannot pay for it (429)
    ├── (AuthenticationError)     no credential, or one we do not accept (401)
    └── (ForbiddenError)          authenticated, but not allowed to do this (403)

The two in brackets are about callers, not data, so they live with the node that knows its
callers (``nodes.access``); their message codes are in ``MESSAGES`` with the others.

Messages are written for the person on the other end: they never contain secrets. An error
may carry its sentence as a ``Message`` (a stable code from ``MESSAGES``, its parameters and
the English template), which ``exchange.api.problems`` renders in the caller's language; ``str``
of the error stays the English sentence, for logs and the CLI. Extension members of the
problem (``problem_extra``) are typed on the base class too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from string import Formatter
from types import MappingProxyType
from typing import Self


class ExchangeError(Exception):
    """Base of every error whose message may be shown to the caller.

    ``message`` is the sentence as data, when the raiser gave one (``str(exc)`` is then its
    English rendering); ``problem_extra`` holds extension members of the problem answer,
    safe to show. Subclasses may assign ``problem_extra`` before or after ``__init__``.
    """

    message: Message | None = None
    problem_extra: Mapping[str, object] = MappingProxyType({})

    def __init__(self, message: str | Message = "", *args: object) -> None:
        if isinstance(message, Message):
            self.message = message
            super().__init__(message.english(), *args)
        else:
            super().__init__(message, *args)

    @classmethod
    def coded(cls, code: str, **params: Param) -> Self:
        """The error with the sentence ``MESSAGES[code]`` filled with ``params``."""
        return cls(Message.of(code, **params))


class InvalidInputError(ExchangeError):
    """The request is malformed or carries invalid values."""


class NotFoundError(ExchangeError):
    """The thing asked for does not exist or is not visible to this caller."""


class ConflictError(ExchangeError):
    """The request contradicts something stored earlier."""


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

#: The closed set of codes of errors that refuse a request as a whole, each with its English
#: sentence. Placeholders are ``str.format`` names; integers are formatted for the reader's
#: language (in English as plain digits, as logs and tests read them); text params are
#: shown as given (names, values the caller sent, already quoted and cut).
MESSAGES: dict[str, str] = {
    # The body as it arrives (exchange.api.bodies)
    "body_deadline": N_("the body did not arrive within {seconds} seconds; send it again"),
    "client_disconnected": N_("the client closed the connection mid-body"),
    "body_too_large_declared": N_(
        "the body is {declared} bytes; this node accepts at most {limit} bytes per push"
    ),
    "body_too_large": N_("the body exceeds {limit} bytes; split the report into smaller pushes"),
    "charset_not_read": N_("charset {charset} is not read here; send UTF-8"),
    "content_type_not_read": N_(
        "Content-Type '{content_type}' is not read here; send application/json or text/csv"
    ),
    "content_encoding_not_read": N_(
        "this node reads no Content-Encoding (gzip, deflate, br): send the body uncompressed"
    ),
    # CSV
    "csv_not_utf8": N_("the CSV is not UTF-8 (byte {byte} is invalid)"),
    "csv_unreadable": N_("the CSV cannot be read: {reason}"),
    "csv_empty": N_("the CSV is empty; the first row names the fields"),
    "csv_too_many_columns": N_("the header has {columns} columns; {schema} has {fields} fields"),
    "csv_header_only": N_("the CSV has a header but no rows; a report states at least one cell"),
    # HXL-tagged CSV (exchange.formats.hxl_import)
    "hxl_not_declared": N_(
        "{schema} declares no HXL hashtags; send it as a CSV whose header names its fields"
    ),
    "hxl_tag_repeated": N_("the hashtag {tag} heads two columns; keep one of them"),
    "hxl_missing_tags": N_("the hashtag row has no column for {tags} of {schema}"),
    # The report's shape (schemas.validation)
    "no_rows": N_("the report has no rows; a report states at least one cell"),
    "rows_not_objects": N_("'rows' must be an array of objects, one per row"),
    "duplicate_column": N_("a column name appears twice in the header"),
    "unknown_fields": N_("unknown field(s) {names} for {schema}; its fields are {fields}"),
    "unknown_fields_more": N_(
        "unknown field(s) {names} (and {more} more) for {schema}; its fields are {fields}"
    ),
    "missing_fields": N_("required field(s) {fields} missing for {schema}"),
    # Strict JSON (exchange.api.strict_json)
    "json_not_utf8": N_("the body is not UTF-8 (byte {byte} is invalid)"),
    "json_too_deep": N_(
        "the JSON nests too deeply; no request body of this API nests more than a few levels"
    ),
    "json_malformed": N_("the body is not valid JSON: {reason} (line {line}, column {column})"),
    "json_bad_number": N_("the body holds a number this node cannot read: {reason}"),
    "json_long_integer": N_("an integer of {digits} digits; at most {maximum} are read"),
    "json_not_a_value": N_("{name} is not a JSON value"),
    "json_duplicate_key": N_("the key {key} appears twice in one object"),
    "json_lone_surrogate": N_(
        "the text {text} holds a lone UTF-16 surrogate escape; it is not a character"
    ),
    # Whatever the route (exchange.api.problems)
    "no_such_path": N_("nothing is served at this path"),
    "bearer_required": N_("this endpoint needs 'Authorization: Bearer <token>'"),
    "request_invalid": N_("the request is invalid"),
    "internal_error": N_("the node failed to answer; the operator can see why in its log"),
    # Upload sessions (nodes.upload_sessions, exchange.api.upload_commit); ``upload`` is the
    # session's public id, ``key`` the client's idempotency key, both as the client sent them
    "upload_media_type": N_(
        "an upload session takes the media types {media_types}, not {media_type}; "
        "a JSON document goes in one push"
    ),
    "upload_key_reused": N_(
        "idempotency key {key} opened upload {upload} for {schema} ({media_type}); use a new key"
    ),
    "upload_open_conflict": N_(
        "the upload session could not be opened because of a concurrent open"
    ),
    "upload_part_number": N_("part numbers run from 1 to {maximum}, not {number}"),
    "upload_part_empty": N_("a part holds at least one byte"),
    "upload_hxl": N_(
        "line {line} is an HXL hashtag row: an HXL-tagged file is sent in one push, "
        "not through an upload session"
    ),
    "upload_too_large": N_(
        "with this part the upload would hold {size} bytes; this node takes at most {limit} "
        "bytes in one upload"
    ),
    "upload_part_changed": N_("part {number} changed while the upload was being committed"),
    "upload_committed_elsewhere": N_("upload {upload} was committed by another request"),
    "upload_committed": N_(
        "upload {upload} was committed as report {report}; open a new upload to send another report"
    ),
    "upload_not_found": N_("no upload {upload} opened with this token"),
    "upload_expired": N_(
        "upload {upload} expired at {expired_at}, {hours} hours after its last part; open a new one"
    ),
    "upload_no_parts": N_("upload {upload} holds no parts; send part 1 first"),
    "upload_parts_missing": N_("upload {upload} is not complete: part(s) {missing} missing"),
    "upload_parts_extra": N_(
        "upload {upload} is not complete: part(s) past {expected} present: {extra}"
    ),
    "upload_parts_missing_and_extra": N_(
        "upload {upload} is not complete: part(s) {missing} missing; "
        "part(s) past {expected} present: {extra}"
    ),
    "upload_sha256_mismatch": N_(
        "the parts hold a file with SHA-256 {actual}, not {stated}; "
        "send the parts that differ again (GET the upload lists their digests)"
    ),
    "upload_line_too_long": N_("line {line} is longer than {limit} bytes"),
    "upload_line_not_utf8": N_("line {line} is not UTF-8 (byte {byte} of the line is invalid)"),
    "upload_csv_unreadable": N_("the CSV cannot be read near line {line}: {reason}"),
    "upload_ndjson_not_json": N_("line {line}: {reason}"),
    "upload_ndjson_not_object": N_("line {line} is not a JSON object; send one row per line"),
    "upload_no_rows": N_("the upload has no rows; a report states at least one cell"),
    # Federation (exchange.api.routes.federation)
    "release_query_too_large": N_("a release query is at most {limit} bytes; this one is larger"),
    # Emergency escalations (nodes.escalations)
    "escalation_not_found": N_("there is no escalation {escalation}"),
    "escalation_operators_only": N_("escalations are for operators; token '{token}' is {role}"),
    "escalation_self_approval": N_(
        "an escalation needs a second operator: {proposer} proposed escalation {escalation} "
        "and cannot approve it"
    ),
    "escalation_lapsed": N_(
        "escalation {escalation} lapsed unapproved at {lapsed}; propose it again"
    ),
    "escalation_not_a_proposal": N_(
        "escalation {escalation} was approved or withdrawn already; only a proposal can be approved"
    ),
    "escalation_overlap": N_(
        "escalation {other} of agreement {agreement} is in force for {partner} until {until}; "
        "revoke it first, so that one escalation at a time widens an agreement"
    ),
    "escalation_not_revocable": N_(
        "escalation {escalation} has ended or was revoked; there is nothing to revoke"
    ),
    "escalation_refused": N_("the policy refuses this escalation: {reasons}"),
    # Correction notices (exchange.api.routes.notices)
    "notice_query_too_large": N_("a notice query is at most {limit} bytes; this one is larger"),
    # Standing subscriptions (nodes.subscriptions); the comment reserved above sits in
    # ROW_MESSAGES, which holds per-row codes, so these request-level codes live here
    "subscription_cadence": N_("a subscription's cadence is week or month, not {cadence}"),
    "subscription_until": N_(
        "a subscription names no last week (until): it runs until it is cancelled, its "
        "agreement ends or its budget cannot pay"
    ),
    "subscription_period_mismatch": N_(
        "the agreement does not release one {cadence} at a time; subscribe with the cadence "
        "of its periods"
    ),
    "subscription_not_found": N_("no subscription {subscription} of yours"),
    "subscription_period_not_due": N_(
        "period {period} of subscription {subscription} is not due: it is not one of its "
        "periods, or the embargo does not let it out yet"
    ),
    "subscription_ended": N_("subscription {subscription} has ended: {reason}"),
}


@dataclass(frozen=True)
class Message:
    """A sentence as data: a stable ``code``, its English ``template`` and the ``params``.

    Built with ``Message.of``, which checks the params against the template's placeholders,
    so a typo fails where the error is raised, not when a translation is rendered.
    """

    code: str
    template: str
    params: Mapping[str, Param] = dataclass_field(default_factory=dict)

    @classmethod
    def of(cls, code: str, **params: Param) -> Message:
        """``MESSAGES[code]`` with ``params``; raises ``KeyError`` on an unknown code and
        ``ValueError`` when the params are not exactly the template's placeholders."""
        template = MESSAGES[code]
        expected = {name for _, name, _, _ in _FORMATTER.parse(template) if name}
        if set(params) != expected:
            raise ValueError(f"{code} takes {sorted(expected)}, not {sorted(params)}")
        return cls(code, template, MappingProxyType(dict(params)))

    def render(self, template: str, number: Callable[[int], str]) -> str:
        """Fill ``template`` (this message's, or its translation): integers through ``number``."""
        values = {
            key: number(p) if isinstance(p, int) else ", ".join(p) if isinstance(p, tuple) else p
            for key, p in self.params.items()
        }
        return template.format(**values)

    def english(self) -> str:
        return self.render(self.template, str)


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


_FORMATTER = Formatter()


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
