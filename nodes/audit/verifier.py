#!/usr/bin/env python3
"""Offline verifier for audit log exports: copy this one file and run it.

    python verifier.py EXPORT --public-key KEY [--checkpoint KEPT]

It imports only the standard library and ``cryptography``, so an auditor can
check a node's log on a machine that has never seen the project. It is also
the normative reader of the export format; the node's writer reuses its
constants and checkpoint parser so both sides cannot drift apart.

Export format (UTF-8, one record per ``\\n``-terminated line, see docs/audit.md):

* line 1, the header: ``{"format":"crisis-exchange/audit-export","version":1}``
* an entry line is the entry's canonical RFC 8785 bytes, verbatim; its leaf
  hash is ``SHA-256(0x00 || line)`` over the bytes as received (never
  re-serialized); its ``prev`` is the hex leaf hash of the entry before it
* a checkpoint line is ``{"checkpoint":BODY,"signature":"SIG"}`` where BODY is
  the canonical checkpoint JSON that was signed and SIG the standard base64 of
  its Ed25519 signature.
* a key line is ``{"key":STATEMENT,"signature":"SIG"}``: a key rotation, where
  STATEMENT is the canonical endorsement ("node N's next key is K, valid from T;
  my previous key P is valid until U") and SIG the previous key's signature over
  it. The verifier trusts the key it is given and every key that a trusted key
  endorsed (the node's endorsement chain), each within its validity.

A key id is the unpadded base64url SHA-256 of the raw 32-byte public key, as
the node writes it everywhere; checkpoints signed before that wrote the same
digest in hex, which is still read.

Failures raise a `VerificationError` subclass naming what failed; messages
hold numbers, line numbers and hashes, never raw log text::

    VerificationError
    ├── MalformedExportError     not an export, or a line that cannot be read
    ├── EntryModifiedError       an entry's bytes changed after it was chained
    ├── EntryRemovedError        entries missing from the middle of the chain
    ├── EntryInsertedError       an entry that is not part of the chain
    ├── EntryDuplicatedError     an entry repeated verbatim
    ├── EntryReorderedError      entries out of sequence order
    ├── ForeignEntryError        an entry or checkpoint of another node
    ├── SignatureError           a checkpoint signature does not verify
    ├── EndorsementError         a key line is not a valid endorsement by a trusted key
    ├── CheckpointMismatchError  a signed root does not match the entries
    ├── TruncatedLogError        fewer entries than the export's own checkpoint covers
    ├── UncoveredEntriesError    entries not covered by any signed checkpoint
    ├── RollbackError            fewer entries than the auditor's kept checkpoint covers
    └── RewrittenHistoryError    the first entries no longer match the kept checkpoint
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import re
import sys
from binascii import hexlify
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

EXPORT_HEADER = b'{"format":"crisis-exchange/audit-export","version":1}'
CHECKPOINT_PREFIX = b'{"checkpoint":'
KEY_PREFIX = b'{"key":'
ENDORSEMENT_TYPE = "crisis-exchange/key-endorsement/v1"
ENDORSEMENT_KEYS = frozenset(
    {"type", "node_id", "key_id", "public_key", "valid_from", "previous_key_id"}
    | {"previous_valid_until"}
)
SIGNATURE_SEPARATOR = b',"signature":"'
CHECKPOINT_SUFFIX = b'"}'
CHECKPOINT_TYPE = "crisis-exchange/audit-checkpoint/v1"
GENESIS_PREV = "0" * 64
ENTRY_KEYS_V1 = frozenset(
    {"seq", "time", "actor", "role", "action", "resource", "outcome", "reason"}
    | {"policy_hash", "request_digest", "prev", "node_id"}
)
#: Format 2 adds structured fields; format-1 entries (written before) stay valid as stored.
ENTRY_KEYS = ENTRY_KEYS_V1 | {"partner", "schema", "epsilon_micro"}
#: A format-2 entry may carry ``rule`` (what refused a release); it is absent when unset.
ENTRY_KEYS_RULE = ENTRY_KEYS | {"rule"}
CHECKPOINT_KEYS = frozenset({"type", "tree_size", "root_hash", "time", "node_id", "key_id"})
MAX_LINE_BYTES = 65536
MAX_COUNT = 2**53 - 1
EMPTY_ROOT = hashlib.sha256(b"").digest()

_sha256 = hashlib.sha256
#: An entry line of action ``audit.epoch`` (canonical JSON sorts ``action`` first).
_EPOCH_ENTRY = b'{"action":"audit.epoch",'
_HEX = frozenset("0123456789abcdef")
_B64URL = re.compile(rb"[A-Za-z0-9_-]{43}")
_NON_TEXT = frozenset({"seq", "policy_hash", "request_digest", "partner", "schema"})
_NON_TEXT |= {"epsilon_micro"}

# An entry line is the RFC 8785 form of the entry object: these keys in this
# (sorted) order, no whitespace, strings with only the escapes JCS emits, seq
# without leading zeros. One match both validates a line and extracts what the
# chain needs (node_id, prev, seq); it is 2x faster than a JSON parse. The three
# structured fields of format 2 are present together or not at all (format 1); ``rule``
# only ever with them.
_STR = rb'"(?:[^"\\\x00-\x1f]++|\\["\\bfnrt]|\\u00[01][0-9a-f])*+"'
_OPT = rb"(?:" + _STR + rb"|null)"
_INT = rb"(?:0|[1-9][0-9]{0,15})"
_ENTRY_RE = re.compile(
    rb'\{"action":'
    + _STR
    + rb',"actor":'
    + _STR
    + rb'(,"epsilon_micro":(?:'
    + _INT
    + rb"|null))?"
    + rb',"node_id":('
    + _STR
    + rb")"
    rb',"outcome":'
    + _STR
    + rb'(,"partner":'
    + _OPT
    + rb")?"
    + rb',"policy_hash":'
    + _OPT
    + rb',"prev":"([0-9a-f]{64})"'
    rb',"reason":'
    + _STR
    + rb',"request_digest":'
    + _OPT
    + rb',"resource":'
    + _STR
    + rb',"role":'
    + _STR
    + rb'(,"rule":'
    + _STR
    + rb")?"
    + rb'(,"schema":'
    + _OPT
    + rb")?"
    + rb',"seq":(0|[1-9][0-9]{0,15}),"time":'
    + _STR
    + rb"\}"
)


class VerificationError(Exception):
    """The export does not verify; the message says what and where."""

    kind = "invalid"

    def __init__(self, message: str, *, line: int | None = None, seq: int | None = None) -> None:
        super().__init__(message)
        self.line = line
        self.seq = seq


class MalformedExportError(VerificationError):
    """The input is not an export, or a line in it cannot be read."""

    kind = "malformed"


class EntryModifiedError(VerificationError):
    """An entry's bytes changed after the next entry chained to it or a checkpoint signed it."""

    kind = "entry-modified"


class EntryRemovedError(VerificationError):
    """Entries are missing from the middle of the chain."""

    kind = "entry-removed"


class EntryInsertedError(VerificationError):
    """An entry is not part of the hash chain it sits in."""

    kind = "entry-inserted"


class EntryDuplicatedError(VerificationError):
    """An entry appears twice."""

    kind = "entry-duplicated"


class EntryReorderedError(VerificationError):
    """Entries are out of sequence order."""

    kind = "entry-reordered"


class EndorsementError(VerificationError):
    """A key line is malformed, not canonical, or not signed by a key already trusted."""

    kind = "bad-endorsement"


class ForeignEntryError(VerificationError):
    """An entry or checkpoint belongs to another node."""

    kind = "foreign"


class SignatureError(VerificationError):
    """A checkpoint's signature does not verify with the given public key."""

    kind = "bad-signature"


class CheckpointMismatchError(VerificationError):
    """A signed root hash does not match the entries it claims to cover."""

    kind = "checkpoint-mismatch"


class TruncatedLogError(VerificationError):
    """The export holds fewer entries than one of its own checkpoints covers."""

    kind = "truncated"


class UncoveredEntriesError(VerificationError):
    """Entries at the end are not covered by any signed checkpoint."""

    kind = "uncovered"


class RollbackError(VerificationError):
    """The export holds fewer entries than the auditor's kept checkpoint covers."""

    kind = "rollback"


class RewrittenHistoryError(VerificationError):
    """Entries covered by the auditor's kept checkpoint were rewritten."""

    kind = "rewritten"


@dataclass(frozen=True)
class Checkpoint:
    """A parsed checkpoint line; `body` and `signature` are the bytes received."""

    tree_size: int
    root_hash: str
    time: str
    node_id: str
    key_id: str
    body: bytes
    signature: bytes
    line: int | None = None

    def where(self) -> str:
        at = f" at line {self.line}" if self.line is not None else ""
        return f"checkpoint{at} (tree size {self.tree_size})"


@dataclass(frozen=True)
class VerifiedExport:
    """What a successful verification established."""

    entries: int
    checkpoints: int
    tree_size: int
    root_hash: str
    time: str
    node_id: str
    key_id: str
    kept_tree_size: int | None
    #: Seqs of ``audit.epoch`` entries: the node lost entries in a restore and said so there.
    epochs: tuple[int, ...] = ()

    def summary(self) -> str:
        kept = ""
        if self.kept_tree_size is not None:
            kept = f"; consistent with the kept checkpoint of size {self.kept_tree_size}"
        epochs = ""
        if self.epochs:
            seqs = ", ".join(str(seq) for seq in self.epochs)
            epochs = (
                f"; NEW EPOCH declared at entry seq {seqs}: the node lost entries in a restore "
                "and no longer extends a checkpoint it signed before (read those entries)"
            )
        return (
            f"{self.entries} entries, {self.checkpoints} checkpoints; verified tree head: "
            f"size {self.tree_size}, root {self.root_hash}, time {_safe(self.time)}, "
            f"node {_safe(self.node_id)}{kept}{epochs}"
        )


def key_id(public_key: Ed25519PublicKey) -> str:
    """Unpadded base64url SHA-256 of the raw 32-byte public key: the node's key id."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.urlsafe_b64encode(hashlib.sha256(raw).digest()).rstrip(b"=").decode()


def key_id_matches(public_key: Ed25519PublicKey, claimed: str) -> bool:
    """Whether ``claimed`` names ``public_key``: its key id, or the same digest in hex as
    checkpoints signed before format 2 wrote it."""
    if claimed == key_id(public_key):
        return True
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return claimed == hashlib.sha256(raw).hexdigest()


def load_public_key(data: bytes) -> Ed25519PublicKey:
    """Read an Ed25519 public key: PEM, DER, or the raw 32 bytes as hex, base64 or
    unpadded base64url (the form node descriptors publish).

    Raises ValueError if ``data`` is none of these.
    """
    text = data.strip()
    try:
        if text.startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(text)
        elif len(text) == 64 and set(text) <= set(b"0123456789abcdefABCDEF"):
            key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(text.decode()))
        elif len(text) == 44:
            key = Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
        elif len(text) == 43 and _B64URL.fullmatch(text):
            key = Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(text + b"="))
        else:
            key = serialization.load_der_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"not an Ed25519 public key ({exc.__class__.__name__})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def parse_checkpoint_line(line: bytes, lineno: int | None = None) -> Checkpoint:
    """Split and parse a checkpoint line without checking its signature.

    Raises MalformedExportError if the line is not a well-formed checkpoint.
    """
    body, signature = _split_checkpoint(line, lineno)
    return _parse_checkpoint_body(body, signature, lineno)


def verify_checkpoint(checkpoint: Checkpoint, public_key: Ed25519PublicKey) -> None:
    """Check the Ed25519 signature over the checkpoint body as received.

    Raises SignatureError if it does not verify.
    """
    _check_signature(checkpoint.body, checkpoint.signature, public_key, checkpoint.line, None)


def verify_export(
    export: bytes | Iterable[bytes],
    public_key: Ed25519PublicKey,
    kept_checkpoint: bytes | None = None,
) -> VerifiedExport:
    """Verify a whole export, optionally against a checkpoint the auditor kept.

    ``export`` is the file's bytes or an iterable of its lines. Returns what
    was verified; raises a VerificationError subclass naming the first thing
    that failed. Never raises anything else for any input.
    """
    if isinstance(export, bytes | bytearray | memoryview):
        lines: Iterable[bytes] = _split_lines(bytes(export))
    else:
        lines = _strip_lines(export)
    return _Verification(public_key, kept_checkpoint).run(lines)


def verify_export_file(
    path: str | Path,
    public_key: Ed25519PublicKey,
    kept_checkpoint: bytes | None = None,
) -> VerifiedExport:
    """Verify an export file (``-`` for stdin), reading it line by line.

    Raises OSError if it cannot be read, VerificationError if it does not verify.
    """
    if str(path) == "-":
        return verify_export(_read_lines(sys.stdin.buffer), public_key, kept_checkpoint)
    with Path(path).open("rb") as handle:
        return verify_export(_read_lines(handle), public_key, kept_checkpoint)


class _Verification:
    """One run over one export; state lives here so the module stays reentrant."""

    def __init__(self, public_key: Ed25519PublicKey, kept: bytes | None) -> None:
        self.key = public_key
        self.keys = _KeyChain(public_key)
        self.kept = None if kept is None else self._read_kept(kept)
        self.entries = _Entries()
        self.checkpoints: list[Checkpoint] = []
        self.roots: dict[int, bytes] = {}

    def _read_kept(self, data: bytes) -> Checkpoint:
        try:
            checkpoint = parse_checkpoint_line(data.strip())
        except VerificationError as exc:
            raise MalformedExportError(f"kept checkpoint: {exc}") from None
        try:
            verify_checkpoint(checkpoint, self.key)
        except SignatureError:
            if key_id_matches(self.key, checkpoint.key_id):
                raise SignatureError(
                    "kept checkpoint: signature does not verify with the supplied public key"
                ) from None
            return checkpoint  # signed by a later key: checked once the key lines are read
        return checkpoint

    def _check_kept_signature(self) -> None:
        kept = self.kept
        if kept is None or key_id_matches(self.key, kept.key_id):
            return
        key = self.keys.find(kept.key_id)
        try:
            if key is None:
                raise SignatureError("")
            verify_checkpoint(kept, key)
        except SignatureError:
            raise SignatureError(
                "kept checkpoint: signature does not verify with the supplied public key or a "
                "key it endorsed"
            ) from None

    def run(self, lines: Iterable[bytes]) -> VerifiedExport:
        numbered = enumerate(lines, start=1)
        first = next(numbered, None)
        if first is None:
            raise MalformedExportError("empty input: not an audit export")
        if first[1] != EXPORT_HEADER:
            what = (
                "unsupported export version"
                if first[1].startswith(b'{"format":')
                else ("not an audit export")
            )
            raise MalformedExportError(f"line 1: {what} (bad header)", line=1)
        self.entries.read(numbered, self._read_checkpoint, self._read_key)
        self._check_kept_signature()
        entries = self.entries
        if entries.break_at is not None:
            raise entries.explain_break(self._latest_covering(entries.count))
        head = self._check_checkpoints()
        kept_size = self._check_kept()
        return VerifiedExport(
            entries=entries.count,
            checkpoints=len(self.checkpoints),
            tree_size=head.tree_size,
            root_hash=head.root_hash,
            time=head.time,
            node_id=head.node_id,
            key_id=head.key_id,
            kept_tree_size=kept_size,
            epochs=tuple(entries.epochs),
        )

    def _read_checkpoint(self, line: bytes, lineno: int) -> None:
        body, signature = _split_checkpoint(line, lineno)
        try:
            checkpoint = _parse_checkpoint_body(body, signature, lineno)
        except MalformedExportError:
            # A changed body is a bad signature, whether or not it still parses.
            _check_signature(body, signature, self.key, lineno, None)
            raise
        key = self.keys.find(checkpoint.key_id) or self.key
        _check_signature(body, signature, key, lineno, checkpoint)
        self.keys.check_validity(checkpoint)
        self.checkpoints.append(checkpoint)

    def _read_key(self, line: bytes, lineno: int) -> None:
        self.keys.endorse(line, lineno)

    def _latest_covering(self, size: int) -> Checkpoint | None:
        matches = [c for c in self.checkpoints if c.tree_size == size]
        return matches[-1] if matches else None

    def _check_checkpoints(self) -> Checkpoint:
        entries, checkpoints = self.entries, self.checkpoints
        count = entries.count
        if not checkpoints:
            raise UncoveredEntriesError(
                f"no checkpoint in the export: none of its {count} entries is signed"
            )
        node_id = checkpoints[0].node_id
        if self.keys.node_id not in (None, node_id):
            raise ForeignEntryError(
                f"a key line (line {self.keys.node_line}) endorses a key of another node than "
                f"the checkpoint at line {checkpoints[0].line}",
                line=self.keys.node_line,
            )
        for checkpoint in checkpoints:
            if checkpoint.node_id != node_id:
                raise ForeignEntryError(
                    f"{checkpoint.where()} is for another node than the checkpoint at line "
                    f"{checkpoints[0].line}",
                    line=checkpoint.line,
                )
        head = max(checkpoints, key=lambda c: c.tree_size)
        if head.tree_size > count:
            raise TruncatedLogError(
                f"log cut short: {head.where()} covers {head.tree_size} entries but the export "
                f"holds {count}; {_seq_range(count, head.tree_size)} "
                f"{'is' if head.tree_size - count == 1 else 'are'} missing",
                line=head.line,
                seq=count,
            )
        sizes = {c.tree_size for c in checkpoints}
        if self.kept is not None and self.kept.tree_size <= count:
            sizes.add(self.kept.tree_size)
        self.roots = entries.roots(sizes)
        verified = 0
        for checkpoint in sorted(checkpoints, key=lambda c: c.tree_size):
            if self.roots[checkpoint.tree_size].hex() != checkpoint.root_hash:
                raise entries.explain_root_mismatch(checkpoint, verified)
            verified = checkpoint.tree_size
        if head.tree_size < count:
            raise UncoveredEntriesError(
                f"{_seq_range(head.tree_size, count)} (from line "
                f"{entries.lines[head.tree_size]}) {'is' if count - head.tree_size == 1 else 'are'}"
                f" not covered by any signed checkpoint; "
                f"the newest checkpoint is {head.where()}",
                line=entries.lines[head.tree_size],
                seq=head.tree_size,
            )
        if entries.foreign_at is not None:
            pos = entries.foreign_at
            raise ForeignEntryError(
                f"entry seq {pos} (line {entries.lines[pos]}) names another node than entry seq 0",
                line=entries.lines[pos],
                seq=pos,
            )
        if count and entries.node_id != node_id:
            raise ForeignEntryError(
                f"the entries name another node than {head.where()}", line=head.line
            )
        return head

    def _check_kept(self) -> int | None:
        kept = self.kept
        if kept is None:
            return None
        count = self.entries.count
        if kept.node_id != self.checkpoints[0].node_id:
            raise ForeignEntryError("the kept checkpoint is for another node than this export")
        if kept.tree_size > count:
            raise RollbackError(
                f"log cut short or rolled back: your kept checkpoint (tree size {kept.tree_size},"
                f" time {_safe(kept.time)}) covers {kept.tree_size} entries but the export holds"
                f" only {count}; {_seq_range(count, kept.tree_size)} "
                f"{'is' if kept.tree_size - count == 1 else 'are'} gone, and whether the "
                f"{count} entries it holds are the ones you saw cannot be told from one "
                f"checkpoint (check it against an export you verified before)",
                seq=count,
            )
        if self.roots[kept.tree_size].hex() != kept.root_hash:
            raise RewrittenHistoryError(
                f"history rewritten: the export's first {kept.tree_size} entries do not match "
                f"your kept checkpoint (tree size {kept.tree_size}, time {_safe(kept.time)}); "
                f"the log is not an extension of what you saw"
            )
        return kept.tree_size


class _KeyChain:
    """The keys this verification trusts: the supplied one, then each key a trusted key
    endorsed (key lines), with the validity the endorsement states.

    The statement is rebuilt here from its fields (RFC 8785 of an object of short ASCII
    strings: sorted keys, no whitespace), independently of the node's code, and must equal
    the bytes received; the signature is checked over the bytes received.
    """

    def __init__(self, anchor: Ed25519PublicKey) -> None:
        self.keys: dict[str, Ed25519PublicKey] = {key_id(anchor): anchor}
        self.valid_from: dict[str, datetime] = {}
        self.valid_until: dict[str, datetime] = {}
        self.node_id: str | None = None
        self.node_line: int | None = None

    def find(self, claimed: str) -> Ed25519PublicKey | None:
        found = self.keys.get(claimed)
        if found is None:
            found = next((k for k in self.keys.values() if key_id_matches(k, claimed)), None)
        return found

    def endorse(self, line: bytes, lineno: int) -> None:
        statement, signature = _split_signed(line, KEY_PREFIX, lineno, "key")
        fields = _endorsement_fields(statement, lineno)
        endorser = self.keys.get(fields["previous_key_id"])
        if endorser is None and fields["key_id"] in self.keys:
            return  # endorses a key already trusted by an older one we do not hold: adds nothing
        if endorser is None:
            raise EndorsementError(
                f"line {lineno}: key {_safe(fields['key_id'])} is endorsed by key "
                f"{_safe(fields['previous_key_id'])}, which is neither the supplied key nor "
                "endorsed by it on an earlier line",
                line=lineno,
            )
        try:
            endorser.verify(signature, statement)
        except InvalidSignature:
            raise EndorsementError(
                f"line {lineno}: the endorsement of key {_safe(fields['key_id'])} does not "
                f"verify with key {_safe(fields['previous_key_id'])}",
                line=lineno,
            ) from None
        if self.node_id is None:
            self.node_id, self.node_line = fields["node_id"], lineno
        elif fields["node_id"] != self.node_id:
            raise ForeignEntryError(
                f"line {lineno}: a key line for another node than line {self.node_line}",
                line=lineno,
            )
        new = fields["key_id"]
        self.keys[new] = Ed25519PublicKey.from_public_bytes(
            base64.urlsafe_b64decode(fields["public_key"] + "=")
        )
        self.valid_from[new] = _moment(fields["valid_from"], lineno)
        self.valid_until[fields["previous_key_id"]] = _moment(
            fields["previous_valid_until"], lineno
        )

    def check_validity(self, checkpoint: Checkpoint) -> None:
        """A key signs only within its validity: a retired key cannot sign later history."""
        kid = next((k for k, v in self.keys.items() if key_id_matches(v, checkpoint.key_id)), "")
        start, end = self.valid_from.get(kid), self.valid_until.get(kid)
        if start is None and end is None:
            return
        try:
            when = datetime.fromisoformat(checkpoint.time)
        except ValueError:
            when = None
        if when is None or when.tzinfo is None:
            raise MalformedExportError(
                f"{checkpoint.where()}: its time is not a UTC time", line=checkpoint.line
            )
        if (start is not None and when < start) or (end is not None and when >= end):
            raise EndorsementError(
                f"{checkpoint.where()} is signed by key {_safe(kid)} at {_safe(checkpoint.time)},"
                " outside the validity its endorsements give it",
                line=checkpoint.line,
            )


def _endorsement_fields(statement: bytes, lineno: int) -> dict[str, str]:
    def bad(why: str) -> EndorsementError:
        return EndorsementError(f"line {lineno}: key line {why}", line=lineno)

    try:
        obj = json.loads(statement)
    except (ValueError, RecursionError):
        raise bad("is not JSON") from None
    if type(obj) is not dict or obj.keys() != ENDORSEMENT_KEYS:
        raise bad("does not hold exactly the endorsement fields")
    if not all(type(v) is str and v.isascii() and v.isprintable() for v in obj.values()):
        raise bad("has a field that is not a printable ASCII string")
    if obj["type"] != ENDORSEMENT_TYPE:
        raise bad("is not a key endorsement")
    rebuilt = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if rebuilt.encode() != statement:
        raise bad("is not in canonical form (RFC 8785)")
    public = obj["public_key"].encode()
    if not _B64URL.fullmatch(public):
        raise bad("holds a public key that is not 43 characters of base64url")
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(public + b"="))
    except ValueError:
        raise bad("holds a public key that is not Ed25519") from None
    if key_id(key) != obj["key_id"]:
        raise bad("names a key id that is not the SHA-256 of its public key")
    return dict(obj)


def _moment(text: str, lineno: int) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise EndorsementError(f"line {lineno}: key line time is not a UTC time", line=lineno)
    return when


def _split_signed(line: bytes, prefix: bytes, lineno: int | None, what: str) -> tuple[bytes, bytes]:
    where = f"line {lineno}: " if lineno is not None else ""
    cut = line.rfind(SIGNATURE_SEPARATOR)
    if (
        len(line) > MAX_LINE_BYTES
        or not line.startswith(prefix)
        or not line.endswith(CHECKPOINT_SUFFIX)
        or cut < len(prefix)
    ):
        raise MalformedExportError(f"{where}not a {what} line", line=lineno)
    body = line[len(prefix) : cut]
    encoded = line[cut + len(SIGNATURE_SEPARATOR) : -len(CHECKPOINT_SUFFIX)]
    try:
        signature = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedExportError(f"{where}{what} signature is not base64", line=lineno) from None
    if len(signature) != 64 or base64.b64encode(signature) != encoded:
        raise MalformedExportError(f"{where}{what} signature is not 64 bytes", line=lineno)
    return body, signature


class _Entries:
    """Entry lines in file order: leaf hashes, line numbers, and the first chain break.

    Until the first break only hashes and line numbers are kept (a position's
    seq is the position, its prev the hash before it); from the break on the
    claimed seq and prev are kept too, to explain what happened.
    """

    def __init__(self) -> None:
        self.hashes: list[bytes] = []
        self.lines: list[int] = []
        self.count = 0
        self.node_id: str | None = None
        self._node_raw = b""
        self.foreign_at: int | None = None
        self.break_at: int | None = None
        self.tail_seq: list[int] = []
        self.tail_prev: list[str] = []
        self.last_line = b""
        self._last_hex = GENESIS_PREV.encode()
        self.epochs: list[int] = []  # positions of audit.epoch entries

    def read(
        self,
        numbered: Iterable[tuple[int, bytes]],
        checkpoint: Callable[[bytes, int], None],
        key: Callable[[bytes, int], None],
    ) -> None:
        """Read all lines after the header, handing checkpoint lines to ``checkpoint``.

        This loop is the hot path: a canonical entry with the next seq, the
        expected prev and the first entry's node id costs one regular
        expression match and one hash. Anything else goes through `add`.
        """
        hashes, lines = self.hashes, self.lines
        add_hash, add_line = hashes.append, lines.append
        match, sha, prefix = _ENTRY_RE.fullmatch, _sha256, CHECKPOINT_PREFIX
        fast, last_hex, node_raw = True, self._last_hex, self._node_raw
        for lineno, line in numbered:
            if line.startswith(prefix):
                checkpoint(line, lineno)
                continue
            if line.startswith(KEY_PREFIX):
                key(line, lineno)
                continue
            found = match(line) if fast else None
            if found is not None and (line.isascii() or _is_utf8(line)):
                eps, node, partner, prev, rule, schema, seq = found.groups()
                if (
                    prev == last_hex
                    and node == node_raw
                    and int(seq) == len(hashes)
                    and (eps is None) is (partner is None) is (schema is None)
                    and (rule is None or schema is not None)
                ):
                    leaf = sha(b"\x00" + line).digest()
                    last_hex = hexlify(leaf)
                    if line.startswith(_EPOCH_ENTRY):
                        self.epochs.append(len(hashes))
                    add_hash(leaf)
                    add_line(lineno)
                    continue
            self._last_hex, self.count = last_hex, len(hashes)
            self.add(line, lineno)
            fast, last_hex, node_raw = self.break_at is None, self._last_hex, self._node_raw
        self._last_hex, self.count = last_hex, len(hashes)

    def add(self, line: bytes, lineno: int) -> None:
        """Read one entry line the careful way: validate, then record or explain."""
        position = self.count
        found = _ENTRY_RE.fullmatch(line) if len(line) <= MAX_LINE_BYTES else None
        if found is None or not _is_utf8(line):
            raise _malformed_entry(lineno, position, _diagnose(line))
        eps, node, partner, prev_hex, rule, schema, seq_digits = found.groups()
        if not (eps is None) is (partner is None) is (schema is None) or (
            rule is not None and schema is None
        ):
            raise _malformed_entry(lineno, position, "does not hold exactly the entry fields")
        seq, prev = int(seq_digits), prev_hex.decode()
        if seq > MAX_COUNT:
            raise _malformed_entry(lineno, position, "seq is larger than 2**53-1")
        leaf = _sha256(b"\x00" + line).digest()
        if self.break_at is None and seq == position and prev_hex == self._last_hex:
            self._last_hex = hexlify(leaf)
        else:
            if self.break_at is None:
                self.break_at = position
            self.tail_seq.append(seq)
            self.tail_prev.append(prev)
        if position == 0:
            self._node_raw = node
            self.node_id = json.loads(node)
        elif node != self._node_raw and self.foreign_at is None:
            self.foreign_at = position
        if line.startswith(_EPOCH_ENTRY):
            self.epochs.append(position)
        self.hashes.append(leaf)
        self.lines.append(lineno)
        self.last_line = line
        self.count = position + 1

    def seq(self, position: int) -> int:
        cut = self.break_at
        return position if cut is None or position < cut else self.tail_seq[position - cut]

    def prev(self, position: int) -> str:
        cut = self.break_at
        if cut is None or position < cut:
            return GENESIS_PREV if position == 0 else self.hashes[position - 1].hex()
        return self.tail_prev[position - cut]

    def positions(self, seq: int) -> list[int]:
        """Positions holding ``seq`` (one before the break, any number after)."""
        cut = self.break_at if self.break_at is not None else self.count
        found = [seq] if seq < cut else []
        return found + [cut + i for i, s in enumerate(self.tail_seq) if s == seq]

    def where(self, position: int) -> str:
        return f"entry seq {self.seq(position)} (line {self.lines[position]})"

    def roots(self, sizes: Iterable[int]) -> dict[int, bytes]:
        levels = _perfect_levels(self.hashes)
        return {size: _root_at(levels, size) for size in sizes}

    def explain_break(self, covering: Checkpoint | None) -> VerificationError:
        """Name what the first break in seq order or in the chain means."""
        i = self.break_at
        assert i is not None
        s, p, leaf, line = self.seq(i), self.prev(i), self.hashes[i], self.lines[i]
        expected_prev = GENESIS_PREV if i == 0 else self.hashes[i - 1].hex()
        if s == i:
            return self._explain_chain_break(i, leaf, covering)
        for q in self.positions(s):
            if q != i and self.hashes[q] == leaf:
                return EntryDuplicatedError(
                    f"entry seq {s} at line {line} duplicates line {self.lines[q]}",
                    line=line,
                    seq=s,
                )
        if p == expected_prev:
            after = "the genesis value (it is the first entry)" if i == 0 else f"seq {i - 1}"
            return self._modified(i, f"its seq reads {s} but it chains directly after {after}")
        if s < i:
            return self._explain_seq_conflict(i, s, leaf)
        holders = [q for q in self.positions(s - 1) if q != i]
        seq_i_at = [self.lines[q] for q in self.positions(i)]
        found = f"; seq {i} is at line {seq_i_at[0]}" if seq_i_at else ""
        if any(self.hashes[q].hex() == p for q in holders):
            return EntryReorderedError(
                f"entries out of order: line {line} holds entry seq {s} where seq {i} "
                f"belongs{found}",
                line=line,
                seq=s,
            )
        nxt = i + 1
        if nxt < self.count and self.seq(nxt) == i and self.prev(nxt) == expected_prev:
            return EntryInsertedError(
                f"line {line} (claiming seq {s}) was inserted: the hash chain runs from seq "
                f"{i - 1} straight to seq {i} at line {self.lines[nxt]}",
                line=line,
                seq=s,
            )
        if seq_i_at:
            return EntryReorderedError(
                f"entries out of order: line {line} holds entry seq {s} where seq {i} "
                f"belongs{found}",
                line=line,
                seq=s,
            )
        after = f"line {self.lines[i - 1]}" if i else "the header"
        return EntryRemovedError(
            f"{_seq_range(i, s)} removed: missing between {after} and line {line}",
            line=line,
            seq=i,
        )

    def _explain_chain_break(
        self, i: int, leaf: bytes, covering: Checkpoint | None
    ) -> VerificationError:
        if i == 0:
            return self._modified(
                0, "its prev is not the genesis value (or entries before it were removed)"
            )
        nxt = i + 1
        expected_prev = self.hashes[i - 1].hex()
        if nxt < self.count and self.seq(nxt) == i and self.prev(nxt) == expected_prev:
            return EntryInsertedError(
                f"line {self.lines[i]} (claiming seq {i}) was inserted: the hash chain runs from "
                f"seq {i - 1} straight to seq {i} at line {self.lines[nxt]}",
                line=self.lines[i],
                seq=i,
            )
        if nxt < self.count and self.seq(nxt) == nxt:
            if self.prev(nxt) == leaf.hex():
                return self._modified(
                    i - 1,
                    f"it no longer hashes to the prev recorded by entry seq {i} "
                    f"(line {self.lines[i]})",
                )
            return self._modified(
                i, f"its prev does not match seq {i - 1} and seq {nxt} does not chain to it"
            )
        if nxt == self.count and covering is not None and self._prev_edit_explains(i, covering):
            return self._modified(
                i, f"its prev was altered: restoring it matches {covering.where()}"
            )
        return self._modified(
            i - 1,
            f"it no longer hashes to the prev recorded by entry seq {i} (line {self.lines[i]}),"
            f" unless entry seq {i} was rewritten instead",
        )

    def _prev_edit_explains(self, i: int, covering: Checkpoint) -> bool:
        """Would restoring the last entry's prev make the covering checkpoint match?"""
        claimed = f'"prev":"{self.prev(i)}"'.encode()
        restored = f'"prev":"{self.hashes[i - 1].hex()}"'.encode()
        if self.last_line.count(claimed) != 1:
            return False
        leaf = _sha256(b"\x00" + self.last_line.replace(claimed, restored)).digest()
        levels = _perfect_levels([*self.hashes[:i], leaf])
        return _root_at(levels, i + 1).hex() == covering.root_hash

    def _explain_seq_conflict(self, i: int, s: int, leaf: bytes) -> VerificationError:
        earlier = self.positions(s)[0]
        nxt = i + 1
        if nxt < self.count and self.seq(nxt) == s + 1:
            if self.prev(nxt) == leaf.hex():
                return EntryInsertedError(
                    f"line {self.lines[earlier]} (seq {s}) was inserted: the hash chain runs "
                    f"through entry seq {s} at line {self.lines[i]} instead",
                    line=self.lines[earlier],
                    seq=s,
                )
            if self.prev(nxt) == self.hashes[earlier].hex():
                return EntryInsertedError(
                    f"line {self.lines[i]} (seq {s}) was inserted: it is not part of the hash "
                    f"chain",
                    line=self.lines[i],
                    seq=s,
                )
        return EntryInsertedError(
            f"two different entries claim seq {s}, at lines {self.lines[earlier]} and "
            f"{self.lines[i]}: one was inserted or modified",
            line=self.lines[i],
            seq=s,
        )

    def explain_root_mismatch(self, checkpoint: Checkpoint, verified: int) -> VerificationError:
        size = checkpoint.tree_size
        if size == self.count and size > verified:
            last = size - 1
            return self._modified(
                last,
                f"it does not match {checkpoint.where()} although the hash chain up to it is "
                f"intact: the chain cannot protect the newest entry, the checkpoint does (or "
                f"entries from seq {verified} on were rewritten and re-chained)",
            )
        if size == 0:
            why = "its root is not the empty-tree root"
        elif size <= verified:
            why = "another checkpoint of the same size signs a different root (equivocation)"
        else:
            why = (
                f"entries seq {verified}..{size - 1} were rewritten and re-chained (their hash "
                f"chain is intact, their root is not)"
            )
        return CheckpointMismatchError(
            f"{checkpoint.where()} does not match the entries: {why}", line=checkpoint.line
        )

    def _modified(self, position: int, why: str) -> EntryModifiedError:
        return EntryModifiedError(
            f"{self.where(position)} was modified: {why}",
            line=self.lines[position],
            seq=self.seq(position),
        )


def _is_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _diagnose(line: bytes) -> str:
    """Say why a line is not a canonical entry, for the verdict."""
    if len(line) > MAX_LINE_BYTES:
        return f"longer than {MAX_LINE_BYTES} bytes"
    if not _is_utf8(line):
        return "not valid UTF-8"
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):
        return "not valid JSON"
    if type(obj) is not dict:
        return "not a JSON object"
    if obj.keys() not in (ENTRY_KEYS, ENTRY_KEYS_RULE, ENTRY_KEYS_V1):
        return "does not hold exactly the entry fields"
    seq, prev = obj["seq"], obj["prev"]
    if type(seq) is not int or not 0 <= seq <= MAX_COUNT:
        return "seq is not an integer from 0 to 2**53-1"
    if type(prev) is not str or len(prev) != 64 or not _HEX.issuperset(prev):
        return "prev is not 64 lowercase hex digits"
    if any(type(v) is not str for k, v in obj.items() if k not in _NON_TEXT):
        return "a text field is not a string"
    eps = obj.get("epsilon_micro")
    if eps is not None and (type(eps) is not int or not 0 <= eps <= MAX_COUNT):
        return "epsilon_micro is not null or an integer from 0 to 2**53-1"
    return "not in canonical form (RFC 8785: sorted keys, no whitespace, minimal escapes)"


def _malformed_entry(lineno: int, position: int, why: str) -> MalformedExportError:
    return MalformedExportError(
        f"line {lineno} (expected entry seq {position}): {why}", line=lineno, seq=position
    )


def _split_checkpoint(line: bytes, lineno: int | None) -> tuple[bytes, bytes]:
    return _split_signed(line, CHECKPOINT_PREFIX, lineno, "checkpoint")


def _parse_checkpoint_body(body: bytes, signature: bytes, lineno: int | None) -> Checkpoint:
    where = f"line {lineno}: " if lineno is not None else ""
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError):
        raise MalformedExportError(f"{where}checkpoint body is not JSON", line=lineno) from None
    if type(obj) is not dict or obj.keys() != CHECKPOINT_KEYS or obj["type"] != CHECKPOINT_TYPE:
        raise MalformedExportError(f"{where}checkpoint body has the wrong fields", line=lineno)
    size, root_hash = obj["tree_size"], obj["root_hash"]
    if type(size) is not int or not 0 <= size <= MAX_COUNT:
        raise MalformedExportError(f"{where}checkpoint tree_size is out of range", line=lineno)
    if type(root_hash) is not str or len(root_hash) != 64 or not _HEX.issuperset(root_hash):
        raise MalformedExportError(f"{where}checkpoint root_hash is not hex", line=lineno)
    if not all(type(obj[k]) is str for k in ("time", "node_id", "key_id")):
        raise MalformedExportError(f"{where}checkpoint text fields are not strings", line=lineno)
    return Checkpoint(
        tree_size=size,
        root_hash=root_hash,
        time=obj["time"],
        node_id=obj["node_id"],
        key_id=obj["key_id"],
        body=body,
        signature=signature,
        line=lineno,
    )


def _check_signature(
    body: bytes,
    signature: bytes,
    public_key: Ed25519PublicKey,
    lineno: int | None,
    checkpoint: Checkpoint | None,
) -> None:
    try:
        public_key.verify(signature, body)
    except InvalidSignature:
        where = (
            checkpoint.where()
            if checkpoint is not None
            else (f"checkpoint at line {lineno}" if lineno is not None else "checkpoint")
        )
        hint = ""
        if checkpoint is not None and not key_id_matches(public_key, checkpoint.key_id):
            hint = (
                f" (it names key {_safe(checkpoint.key_id)}, which is neither the supplied key "
                "nor endorsed by it in the export's key lines: pass the oldest key of this node "
                "you trust)"
            )
        raise SignatureError(
            f"{where}: signature does not verify with the supplied public key{hint}",
            line=lineno,
        ) from None


def _perfect_levels(hashes: list[bytes]) -> list[list[bytes]]:
    """levels[h][j]: root of the perfect subtree of 2**h leaves starting at j * 2**h."""
    levels = [hashes]
    level = hashes
    sha = _sha256
    while len(level) > 1:
        level = [
            sha(b"\x01" + a + b).digest() for a, b in zip(level[::2], level[1::2], strict=False)
        ]
        levels.append(level)
    return levels


def _root_at(levels: list[list[bytes]], size: int) -> bytes:
    """RFC 6962 root of the first ``size`` leaves, folded from perfect subtrees."""
    if size == 0:
        return EMPTY_ROOT
    pieces: list[bytes] = []
    start = 0
    for height in range(size.bit_length() - 1, -1, -1):
        if size >> height & 1:
            pieces.append(levels[height][start >> height])
            start += 1 << height
    acc = pieces.pop()
    while pieces:
        acc = _sha256(b"\x01" + pieces.pop() + acc).digest()
    return acc


def _seq_range(start: int, stop: int) -> str:
    """Name entries ``start..stop-1``."""
    return f"entry seq {start}" if stop - start == 1 else f"entries seq {start}..{stop - 1}"


def _safe(text: str) -> str:
    """Printable ASCII only, bounded: log-supplied text must not drive a terminal."""
    return "".join(c if " " <= c <= "~" else "?" for c in text[:80])


def _split_lines(data: bytes) -> list[bytes]:
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


def _strip_lines(lines: Iterable[bytes]) -> Iterator[bytes]:
    for line in lines:
        yield line[:-1] if line.endswith(b"\n") else line


def _read_lines(handle: BinaryIO) -> Iterator[bytes]:
    """Lines of a file without their newline, read in 1 MiB chunks.

    A line longer than MAX_LINE_BYTES is yielded as it stands and ends the
    reading: verification rejects it, so nothing after it matters.
    """
    rest = b""
    while chunk := handle.read(1 << 20):
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        yield from lines
        if len(rest) > MAX_LINE_BYTES:
            yield rest
            return
    if rest:
        yield rest


def main(argv: list[str] | None = None) -> int:
    """Command line: exit 0 if the export verifies, 1 if it does not, 2 on usage errors."""
    parser = argparse.ArgumentParser(
        prog="verifier.py", description="Verify an audit log export offline."
    )
    parser.add_argument("export", help="the export file, or - for standard input")
    parser.add_argument("--public-key", required=True, help="the node's Ed25519 public key file")
    parser.add_argument("--checkpoint", help="a checkpoint line you kept from an earlier export")
    args = parser.parse_args(argv)
    try:
        public_key = load_public_key(Path(args.public_key).read_bytes())
        kept = Path(args.checkpoint).read_bytes() if args.checkpoint else None
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        result = verify_export_file(args.export, public_key, kept)
    except VerificationError as exc:
        print(f"FAILED [{exc.kind}]: {exc}")
        return 1
    except OSError as exc:
        print(f"error: cannot read the export: {exc}", file=sys.stderr)
        return 2
    print(f"OK: {result.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
