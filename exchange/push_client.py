"""Pushing a report file to a node in chunks, each chunk safe to send again.

A CSV is streamed: at most one chunk of rows is in memory, whatever the file's size. Each
chunk carries an ``Idempotency-Key`` derived from the file's SHA-256 and the chunk's place,
so an interrupted push can simply be run again: chunks the node already acknowledged are
answered from its record and stored nothing new.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import httpx2
import stamina

from schemas.errors import ExchangeError

DEFAULT_CHUNK_ROWS = 50_000


class PushError(ExchangeError):
    """The node refused a chunk, or could not be reached after retries."""


class _Retryable(Exception):
    """A 5xx or 429 answer: the chunk may be sent again under the same key."""


@dataclass
class PushResult:
    rows: int = 0
    chunks: int = 0
    replayed_chunks: int = 0
    superseded_rows: int = 0
    receipts: list[dict[str, Any]] = field(default_factory=list)


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _line_chunks(path: Path, chunk_rows: int) -> Iterator[tuple[str, bytes, int]]:
    """Chunks of whole lines, sent as they are in the file (no re-encoding).

    A file with a quote may hold a quoted newline, so such files go through ``csv`` instead.
    """
    with path.open("rb") as handle:
        header = handle.readline()
        if not header.strip():
            raise PushError(f"{path} is empty; the first row must name the fields")
        while True:
            lines = list(islice(handle, chunk_rows))
            if not lines:
                return
            body = b"".join(lines)
            if not body.endswith(b"\n"):
                body += b"\n"
            yield "text/csv", header + body, len(lines)


def _quoted_csv_chunks(path: Path, chunk_rows: int) -> Iterator[tuple[str, bytes, int]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        while rows := list(islice(reader, chunk_rows)):
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)
            yield "text/csv", out.getvalue().encode(), len(rows)


def _json_chunks(path: Path, chunk_rows: int) -> Iterator[tuple[str, bytes, int]]:
    """JSON is read whole (a JSON array cannot be streamed with the standard library)."""
    document = json.loads(path.read_bytes())
    rows = document["rows"] if isinstance(document, dict) else document
    if not isinstance(rows, list):
        raise PushError(f"{path}: expected an array of rows or an object with 'rows'")
    extra = {k: v for k, v in document.items() if k != "rows"} if isinstance(document, dict) else {}
    for start in range(0, len(rows), chunk_rows):
        part = rows[start : start + chunk_rows]
        yield "application/json", json.dumps({**extra, "rows": part}).encode(), len(part)


def _has_quotes(path: Path) -> bool:
    with path.open("rb") as handle:
        return any(b'"' in block for block in iter(lambda: handle.read(1 << 20), b""))


def chunks_of(path: Path, chunk_rows: int) -> Iterator[tuple[str, bytes, int]]:
    if path.suffix.lower() == ".json":
        return _json_chunks(path, chunk_rows)
    if _has_quotes(path):
        return _quoted_csv_chunks(path, chunk_rows)
    return _line_chunks(path, chunk_rows)


def push_file(
    client: httpx2.Client,
    *,
    token: str,
    schema_id: str,
    path: Path,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    dry_run: bool = False,
    on_chunk: Callable[[int], None] | None = None,
) -> PushResult:
    """Send ``path`` to the node behind ``client`` (its base URL set); stop at the first refusal."""
    prefix = file_digest(path)[:32]
    result = PushResult()
    for index, (content_type, body, rows) in enumerate(chunks_of(path, chunk_rows)):
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": content_type,
            "Idempotency-Key": f"{prefix}-{chunk_rows}-{index}",
        }
        receipt = _send(client, f"/v1/reports/{schema_id}", body, headers, dry_run)
        result.rows += rows
        result.chunks += 1
        result.replayed_chunks += int(receipt.get("replayed", False))
        result.superseded_rows += int(receipt.get("superseded_rows", 0))
        result.receipts.append(receipt)
        if on_chunk is not None:
            on_chunk(rows)
    return result


@stamina.retry(on=(httpx2.TransportError, _Retryable), attempts=5, timeout=120)
def _post(
    client: httpx2.Client, url: str, body: bytes, headers: dict[str, str], dry_run: bool
) -> httpx2.Response:
    response = client.post(
        url, content=body, headers=headers, params={"dry_run": "true"} if dry_run else None
    )
    if response.status_code >= 500 or response.status_code == 429:
        raise _Retryable(f"{response.status_code} from {url}")
    return response


def _send(
    client: httpx2.Client, url: str, body: bytes, headers: dict[str, str], dry_run: bool
) -> dict[str, Any]:
    try:
        response = _post(client, url, body, headers, dry_run)
    except (httpx2.TransportError, _Retryable) as exc:
        raise PushError(f"could not push to {client.base_url}{url}: {exc}") from None
    if response.status_code not in (200, 201):
        raise PushError(_describe_refusal(response))
    receipt: dict[str, Any] = response.json()
    return receipt


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
    return "\n".join(lines)
