"""Writing audit exports: the file an auditor takes away and verifies offline.

The format is defined by the standalone verifier (`nodes.audit.verifier`) and
documented in docs/audit.md: a header line, then entry lines (each entry's
canonical bytes, verbatim) with each checkpoint line placed right after the
last entry it covers. The node and the tests both write through here, so
what the node exports is what the tests verify.

Streaming: entries are consumed once, in order, and never held in memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import BinaryIO

from nodes.audit import verifier
from nodes.audit.checkpoint import SignedCheckpoint
from nodes.audit.errors import ExportError


def export_lines(
    entries: Iterable[bytes],
    checkpoints: Iterable[SignedCheckpoint],
    key_lines: Iterable[bytes] = (),
) -> Iterator[bytes]:
    """Yield the export's lines, each ending in ``\\n``.

    ``entries`` are canonical entry bytes in seq order from seq 0; ``key_lines`` the node's
    key endorsements, oldest first (`nodes.audit.export.key_lines`), written right after
    the header so the verifier knows every key before the first checkpoint. Raises
    ExportError (after yielding what came before) if an entry cannot be a
    line, or a checkpoint covers more entries than were given.
    """
    pending = sorted(checkpoints, key=lambda c: c.checkpoint.tree_size)
    yield verifier.EXPORT_HEADER + b"\n"
    for line in key_lines:
        yield line + b"\n"
    count = 0
    while pending and pending[0].checkpoint.tree_size == 0:
        yield pending.pop(0).to_line() + b"\n"
    for data in entries:
        _check_entry_line(data, count)
        yield data + b"\n"
        count += 1
        while pending and pending[0].checkpoint.tree_size == count:
            yield pending.pop(0).to_line() + b"\n"
    if pending:
        size = pending[0].checkpoint.tree_size
        raise ExportError(f"a checkpoint covers {size} entries but only {count} were given")


def write_export(
    out: BinaryIO, entries: Iterable[bytes], checkpoints: Iterable[SignedCheckpoint]
) -> int:
    """Write an export to a binary stream; return the number of entries written.

    Raises ExportError as `export_lines` does; the stream then holds a partial
    export that the verifier will reject.
    """
    count = -1
    for line in export_lines(entries, checkpoints):
        out.write(line)
        if not line.startswith(verifier.CHECKPOINT_PREFIX):
            count += 1
    return count


def build_export(entries: Iterable[bytes], checkpoints: Iterable[SignedCheckpoint]) -> bytes:
    """The whole export as bytes (for tests and small logs)."""
    return b"".join(export_lines(entries, checkpoints))


def _check_entry_line(data: bytes, seq: int) -> None:
    if not isinstance(data, bytes):
        raise ExportError(f"entry seq {seq} is not bytes")
    if b"\n" in data or not data.startswith(b"{") or data.startswith(verifier.CHECKPOINT_PREFIX):
        raise ExportError(f"entry seq {seq} is not canonical entry JSON on one line")
    if len(data) > verifier.MAX_LINE_BYTES:
        raise ExportError(f"entry seq {seq} is longer than {verifier.MAX_LINE_BYTES} bytes")
