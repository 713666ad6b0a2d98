"""Pushing a report file to a node: one request when it is small, an upload session when not.

A file of at most ``chunk_rows`` rows goes in one push with an ``Idempotency-Key`` derived
from its SHA-256. A larger one goes through an upload session (``/v1/uploads``): the file
is sent as it is, in parts of ``chunk_rows`` lines, then committed, so the node stores the
whole file as one report or nothing, and names bad rows by the file's own line numbers.
The session is opened under a key derived from the file, so an interrupted push can simply
be run again: the node lists the parts it holds, and only the others are sent.

A CSV is streamed: at most one part is in memory, whatever the file's size. JSON is read
whole (a JSON array cannot be streamed with the standard library); a small file is sent as it
is, a larger one as JSON Lines.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import chain, islice
from pathlib import Path
from typing import Any

import httpx2
import msgspec
import orjson
import stamina

from exchange.formats import hxl_import
from schemas.errors import ExchangeError

DEFAULT_CHUNK_ROWS = 50_000
#: A part is also cut at this size, and at the node's own limit if that is smaller.
DEFAULT_PART_BYTES = 16 * 1024 * 1024


class PushError(ExchangeError):
    """The node refused the report, or could not be reached after retries."""


class _Retryable(Exception):
    """A 5xx or 429 answer: the request may be sent again as it was."""


@dataclass
class PushResult:
    rows: int = 0
    parts: int = 0  # requests that carried part of the file (1 for a single push)
    parts_already_held: int = 0  # parts the node held from an interrupted run: not sent again
    replayed: bool = False  # the node had stored this file before: nothing new was stored
    superseded_rows: int = 0
    receipt: dict[str, Any] = field(default_factory=dict)


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _csv_parts(path: Path, rows: int, limit: int) -> Iterator[tuple[bytes, int]]:
    """The file as it is, cut after every ``rows`` lines or before ``limit`` bytes.

    A cut may fall inside a quoted value or a long line: the node joins the parts before
    it reads them. The header travels in the first part only.
    """
    with path.open("rb") as handle:
        header = handle.readline()
        if not header.strip():
            raise PushError(f"{path} is empty; the first row must name the fields")
        pending: list[bytes] = []
        size = lines = 0
        for line in chain([header], handle):
            while size + len(line) > limit:  # a part full before its rows: cut in the line
                room = limit - size
                pending.append(line[:room])
                yield b"".join(pending), lines
                pending, size, lines, line = [], 0, 0, line[room:]
            pending.append(line)
            size += len(line)
            lines += line is not header
            if lines == rows:
                yield b"".join(pending), lines
                pending, size, lines = [], 0, 0
        if pending:
            yield b"".join(pending), lines


#: A JSON report as it is written, its rows left undecoded (``msgspec.Raw``: each row's
#: own bytes, checked for JSON syntax only), so a large file is cut into lines at the cost
#: of one parse, not a decode and an encode of every row.
_RAW_REPORT = msgspec.json.Decoder(dict[str, msgspec.Raw] | list[msgspec.Raw])
_RAW_ROWS = msgspec.json.Decoder(list[msgspec.Raw])


def _json_rows(body: bytes) -> tuple[list[msgspec.Raw], dict[str, Any]] | None:
    """The rows of a JSON report, undecoded, and its other members; None when it is not
    one, and then the node, sent the file as it is, says exactly what is wrong with it."""
    try:
        document = _RAW_REPORT.decode(body)
        if isinstance(document, list):
            return document, {}
        if "rows" not in document:
            return None
        extra = {k: orjson.loads(bytes(v)) for k, v in document.items() if k != "rows"}
        return _RAW_ROWS.decode(document["rows"]), extra
    except (msgspec.DecodeError, msgspec.ValidationError, orjson.JSONDecodeError):
        return None


def _json_parts(rows: list[msgspec.Raw], per_part: int, limit: int) -> Iterator[tuple[bytes, int]]:
    """JSON Lines, ``per_part`` rows (and at most ``limit`` bytes) a part: each row's own
    bytes on a line. A part is joined at once when no row in it holds a line break and it
    fits; from the first that does not, the rest go row by row."""
    for start in range(0, len(rows), per_part):
        chunk = list(map(bytes, rows[start : start + per_part]))
        part = b"\n".join(chunk) + b"\n"
        if len(part) > limit or part.count(b"\n") != len(chunk) or b"\r" in part:
            yield from _json_lines_by_row(rows[start:], per_part, limit)
            return
        yield part, len(chunk)


def _json_lines_by_row(
    rows: list[msgspec.Raw], per_part: int, limit: int
) -> Iterator[tuple[bytes, int]]:
    """A line break inside a row can only be whitespace (JSON strings escape theirs), so it
    becomes a space; a part ends before the row that would take it past ``limit``."""
    pending: list[bytes] = []
    size = 0
    for row in rows:
        line = bytes(row)
        if b"\n" in line or b"\r" in line:
            line = line.replace(b"\n", b" ").replace(b"\r", b" ")
        if pending and (len(pending) == per_part or size + len(line) + 1 > limit):
            yield b"\n".join(pending) + b"\n", len(pending)
            pending, size = [], 0
        pending.append(line)
        size += len(line) + 1
    if pending:
        yield b"\n".join(pending) + b"\n", len(pending)


def _fits_one_push(path: Path, chunk_rows: int, part_bytes: int) -> bool:
    if _hxl_tagged(path):
        return True  # the node reads HXL tags in one push only; a file too large gets 413
    if path.stat().st_size > part_bytes:
        return False
    with path.open("rb") as handle:
        return sum(1 for _ in islice(handle, chunk_rows + 2)) <= chunk_rows + 1


def _hxl_tagged(path: Path) -> bool:
    """Whether the CSV file has an HXL hashtag row under its header rows."""
    with path.open("rb") as handle:
        head = handle.read(64 * 1024).decode("utf-8", "replace")
    return hxl_import.head_tag_row(head.splitlines(keepends=True)) is not None


def push_file(
    client: httpx2.Client,
    *,
    token: str,
    schema_id: str,
    path: Path,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    part_bytes: int = DEFAULT_PART_BYTES,
    dry_run: bool = False,
    on_chunk: Callable[[int], None] | None = None,
) -> PushResult:
    """Send ``path`` to the node behind ``client`` (its base URL set) as one report."""
    auth = {"Authorization": f"Bearer {token}"}
    digest = file_digest(path)
    is_json = path.suffix.lower() == ".json"
    if is_json:
        body = path.read_bytes()
        parsed = _json_rows(body)
        if parsed is None or len(parsed[0]) <= chunk_rows:  # sent as it is, byte for byte
            return _push_once(
                client,
                schema_id,
                body,
                "application/json",
                auth,
                digest,
                dry_run,
                len(parsed[0]) if parsed else 0,
                on_chunk,
            )
        rows, extra = parsed
        del body
    elif _fits_one_push(path, chunk_rows, part_bytes):
        body = path.read_bytes()
        lines = max(body.count(b"\n") - 1, 0)
        return _push_once(
            client, schema_id, body, "text/csv", auth, digest, dry_run, lines, on_chunk
        )
    opened = _send(
        client,
        "POST",
        "/v1/uploads",
        headers={**auth, "Idempotency-Key": f"{digest[:32]}-{chunk_rows}-upload"},
        json_body={
            "schema_id": schema_id,
            "media_type": "application/x-ndjson" if is_json else "text/csv",
            **(
                {"generated_at": extra["generated_at"]}
                if is_json and "generated_at" in extra
                else {}
            ),
        },
    )
    upload = f"/v1/uploads/{opened['upload_id']}"
    result = PushResult()
    if opened["state"] == "committed":  # an earlier run stored it: the commit answers again
        return _result(result, _send(client, "POST", f"{upload}/commit", headers=auth))
    held = {p["number"]: p["sha256"] for p in opened["parts"]}
    limit = min(part_bytes, int(opened["max_part_bytes"]))
    parts = _json_parts(rows, chunk_rows, limit) if is_json else _csv_parts(path, chunk_rows, limit)
    for number, (data, lines) in enumerate(parts, 1):
        if held.get(number) == hashlib.sha256(data).hexdigest():
            result.parts_already_held += 1
        else:
            _send(client, "PUT", f"{upload}/parts/{number}", headers=auth, content=data)
        result.parts = number
        if on_chunk is not None:
            on_chunk(lines)
    receipt = _send(
        client,
        "POST",
        f"{upload}/commit",
        headers=auth,
        json_body={"parts": result.parts, "sha256": digest if not is_json else None},
        params={"dry_run": "true"} if dry_run else None,
    )
    return _result(result, receipt)


def _push_once(
    client: httpx2.Client,
    schema_id: str,
    body: bytes,
    content_type: str,
    auth: dict[str, str],
    digest: str,
    dry_run: bool,
    rows: int,
    on_chunk: Callable[[int], None] | None,
) -> PushResult:
    receipt = _send(
        client,
        "POST",
        f"/v1/reports/{schema_id}",
        headers={**auth, "Content-Type": content_type, "Idempotency-Key": digest[:32]},
        content=body,
        params={"dry_run": "true"} if dry_run else None,
    )
    if on_chunk is not None:
        on_chunk(rows)
    return _result(PushResult(parts=1), receipt)


def _result(result: PushResult, receipt: dict[str, Any]) -> PushResult:
    result.rows = int(receipt["rows"])
    result.replayed = bool(receipt.get("replayed", False))
    result.superseded_rows = int(receipt.get("superseded_rows", 0))
    result.receipt = receipt
    return result


@stamina.retry(on=(httpx2.TransportError, _Retryable), attempts=5, timeout=120)
def _request(client: httpx2.Client, method: str, url: str, **kwargs: Any) -> httpx2.Response:
    response = client.request(method, url, **kwargs)
    if response.status_code >= 500 or response.status_code == 429:
        raise _Retryable(f"{response.status_code} from {url}")
    return response


def _send(
    client: httpx2.Client,
    method: str,
    url: str,
    *,
    headers: dict[str, str],
    content: bytes | None = None,
    json_body: dict[str, Any] | None = None,
    params: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One request, retried on transport errors and 5xx; every such request is safe to repeat."""
    try:
        response = _request(
            client, method, url, headers=headers, content=content, json=json_body, params=params
        )
    except (httpx2.TransportError, _Retryable) as exc:
        raise PushError(f"could not push to {client.base_url}{url}: {exc}") from None
    if response.status_code not in (200, 201):
        raise PushError(_describe_refusal(response))
    answer: dict[str, Any] = response.json()
    return answer


def _describe_refusal(response: httpx2.Response) -> str:
    try:
        problem = response.json()
    except ValueError:
        return f"the node answered {response.status_code} without a problem document"
    lines = [f"{response.status_code} {problem.get('title', '')}: {problem.get('detail', '')}"]
    for error in problem.get("errors") or []:
        lines.append(
            f"  row {error['row']}, {error['field']}={error['value']!r}: {error['detail']}"
            f" [{error['code']}]"
        )
    more = problem.get("total_errors", 0) - len(problem.get("errors") or [])
    if more > 0:
        lines.append(f"  ... and {more} more")
    return "\n".join(lines)


@dataclass
class Dhis2Outcome:
    """DHIS2's answer to a data value set: the web message, and whether it was imported."""

    imported: bool
    message: dict[str, Any]

    @property
    def summary(self) -> dict[str, Any]:
        response: dict[str, Any] = self.message.get("response") or {}
        return response


def push_dhis2(
    client: httpx2.Client,
    *,
    token: str,
    path: Path,
    dry_run: bool = False,
    id_scheme: str | None = None,
) -> Dhis2Outcome:
    """Send a data value set exported from DHIS2 (JSON, or CSV by its ``.csv`` suffix) to
    ``/api/dataValueSets``, as DHIS2 would (``Authorization: ApiToken``).

    Raises PushError when the node refused it before the import (401, 403, 413...) or could
    not be reached; a set with conflicts is an outcome (``imported`` False), not an error.
    """
    is_csv = path.suffix.lower() == ".csv"
    params = {"dryRun": "true"} if dry_run else {}
    if id_scheme:
        params["idScheme"] = id_scheme
    try:
        response = _request(
            client,
            "POST",
            "/api/dataValueSets",
            headers={
                "Authorization": f"ApiToken {token}",
                "Content-Type": "application/csv" if is_csv else "application/json",
            },
            content=path.read_bytes(),
            params=params or None,
        )
    except (httpx2.TransportError, _Retryable) as exc:
        raise PushError(f"could not push to {client.base_url}/api/dataValueSets: {exc}") from None
    if response.status_code not in (200, 409) or "problem" in response.headers.get(
        "content-type", ""
    ):
        raise PushError(_describe_refusal(response))
    message: dict[str, Any] = response.json()
    return Dhis2Outcome(imported=response.status_code == 200, message=message)
