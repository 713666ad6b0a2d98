"""Audit entries, checkpoints, the export writer and the offline verifier.

Negative tests outnumber positive ones: every way of tampering with an
export must end in a verdict that names what was changed, and no input at
all may make the verifier raise anything but a VerificationError.
"""

from __future__ import annotations

import ast
import io
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodes.audit import verifier
from nodes.audit.checkpoint import (
    SignedCheckpoint,
    parse_signed_checkpoint,
    sign_checkpoint,
    verify_checkpoint,
)
from nodes.audit.entry import GENESIS_PREV, AuditEntry, encode_entry, prev_for
from nodes.audit.errors import ExportError, InvalidCheckpointError, InvalidEntryError
from nodes.audit.export_format import build_export, export_lines, write_export
from nodes.audit.merkle import MerkleTree, leaf_hash
from nodes.audit.verifier import (
    EntryDuplicatedError,
    EntryInsertedError,
    EntryModifiedError,
    EntryRemovedError,
    EntryReorderedError,
    MalformedExportError,
    RewrittenHistoryError,
    RollbackError,
    SignatureError,
    TruncatedLogError,
    UncoveredEntriesError,
    VerificationError,
    VerifiedExport,
    verify_export,
)

T0 = datetime(2025, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)
KEY = Ed25519PrivateKey.generate()
PUB = KEY.public_key()


def fields(seq: int, prev: str, **overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "seq": seq,
        "time": T0 + timedelta(seconds=seq),
        "actor": "partner:fr-sante-publique",
        "role": "partner",
        "action": "pull",
        "resource": f"schema:weekly-epi-counts@1/release/{seq}",
        "outcome": "denied" if seq % 3 == 0 else "allowed",
        "reason": "rule eu-weekly: admin level 1 only, épidémiologie « semaine »",
        "policy_hash": "sha256:" + "ab" * 32,
        "request_digest": None if seq % 2 else "sha-256=:" + "A" * 43 + "=:",
        "prev": prev,
        "node_id": "ht-mspp",
    }
    base.update(overrides)
    return base


@dataclass
class Log:
    """A node's log built the way the node builds it: entry bytes, tree, signed heads."""

    entries: list[bytes] = field(default_factory=list)
    tree: MerkleTree = field(default_factory=MerkleTree)
    key: Ed25519PrivateKey = KEY

    def append(self, **overrides: object) -> bytes:
        seq = len(self.entries)
        prev = prev_for(leaf_hash(self.entries[-1]) if seq else None)
        data = encode_entry(**fields(seq, prev, **overrides))  # type: ignore[arg-type]
        self.entries.append(data)
        self.tree.append(leaf_hash(data))
        return data

    def checkpoint(self, size: int) -> SignedCheckpoint:
        return sign_checkpoint(
            self.key,
            tree_size=size,
            root_hash=self.tree.root(size),
            time=T0 + timedelta(hours=size),
            node_id="ht-mspp",
        )

    def export(self, *sizes: int) -> bytes:
        return build_export(self.entries, [self.checkpoint(s) for s in sizes])


def make_log(n: int, rewrite: dict[int, str] | None = None, key: Ed25519PrivateKey = KEY) -> Log:
    log = Log(key=key)
    for seq in range(n):
        reason = (rewrite or {}).get(seq)
        log.append(**({"reason": reason} if reason else {}))
    return log


LOG20 = make_log(20)
EXPORT20 = LOG20.export(10, 20)  # header, e0..e9, cp10, e10..e19, cp20


def lines_of(data: bytes) -> list[bytes]:
    return data.split(b"\n")[:-1]


def join(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def failure(data: bytes | list[bytes], kept: bytes | None = None) -> VerificationError:
    with pytest.raises(VerificationError) as info:
        verify_export(data, PUB, kept)
    return info.value


# --- entries -------------------------------------------------------------------------


def test_entry_bytes_are_canonical_and_round_trip() -> None:
    data = LOG20.entries[1]
    assert data.startswith(b'{"action":"pull","actor":')  # RFC 8785 sorts keys
    assert b" " not in data.split(b'"reason"')[0]  # no insignificant whitespace
    assert "épidémiologie".encode() in data  # UTF-8, not \u escapes
    entry = AuditEntry.from_bytes(data)
    assert entry.seq == 1
    assert entry.prev == leaf_hash(LOG20.entries[0]).hex()
    assert entry.to_bytes() == data
    assert entry.leaf_hash() == leaf_hash(data)
    assert b'"time":"2025-03-04T05:06:08.123456Z"' in data


def test_time_is_spelled_once_in_utc() -> None:
    plus2 = timezone(timedelta(hours=2))
    a = encode_entry(**fields(0, GENESIS_PREV, time=T0))  # type: ignore[arg-type]
    b = encode_entry(**fields(0, GENESIS_PREV, time=T0.astimezone(plus2)))  # type: ignore[arg-type]
    assert a == b


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"time": datetime(2025, 1, 1)}, "timezone-aware"),
        ({"seq": True}, "seq"),
        ({"seq": -1}, "seq"),
        ({"seq": 2**53}, "seq"),
        ({"actor": ""}, "actor must not be empty"),
        ({"actor": 7}, "actor must be a string"),
        ({"reason": "x" * 2049}, "reason is longer"),
        ({"resource": "line\nbreak"}, "control characters"),
        ({"outcome": "ok\x1b[31m"}, "control characters"),
        ({"reason": "\ud800"}, "control characters"),
        ({"policy_hash": ""}, "policy_hash must not be empty"),
        ({"prev": "AB" * 32}, "prev must be 64 lowercase hex"),
        ({"prev": "ab" * 32}, "GENESIS_PREV"),  # seq 0 must start the chain
    ],
)
def test_malformed_entry_fields_are_refused(overrides: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidEntryError, match=match):
        encode_entry(**{**fields(0, GENESIS_PREV), **overrides})  # type: ignore[arg-type]


def test_secret_values_never_appear_in_errors() -> None:
    with pytest.raises(InvalidEntryError) as info:
        encode_entry(**fields(0, GENESIS_PREV, reason="token=s3cr3t\x00"))  # type: ignore[arg-type]
    assert "s3cr3t" not in str(info.value)


@pytest.mark.parametrize(
    "data",
    [
        LOG20.entries[0].replace(b'"action":', b'"action": '),  # whitespace
        LOG20.entries[0].replace(b'{"action":"pull",', b'{"role":"x","action":"pull",'),
        LOG20.entries[0][:-1],
        b"[]",
        b"\xff",
    ],
)
def test_from_bytes_refuses_anything_but_canonical_entries(data: bytes) -> None:
    with pytest.raises(InvalidEntryError):
        AuditEntry.from_bytes(data)


# --- checkpoints ---------------------------------------------------------------------


def test_checkpoint_signs_and_verifies_over_received_bytes() -> None:
    signed = LOG20.checkpoint(20)
    line = signed.to_line()
    parsed = parse_signed_checkpoint(line)
    assert verify_checkpoint(parsed, PUB) == signed.checkpoint
    assert parsed.checkpoint.root_hash == LOG20.tree.root().hex()
    assert b'"type":"crisis-exchange/audit-checkpoint/v1"' in line


def test_checkpoint_refuses_wrong_key_tampering_and_bad_fields() -> None:
    signed = LOG20.checkpoint(20)
    with pytest.raises(InvalidCheckpointError, match="does not verify"):
        verify_checkpoint(signed, Ed25519PrivateKey.generate().public_key())
    forged = signed.to_line().replace(b'"tree_size":20', b'"tree_size":21')
    with pytest.raises(InvalidCheckpointError, match="does not verify"):
        verify_checkpoint(parse_signed_checkpoint(forged), PUB)
    with pytest.raises(InvalidCheckpointError):
        parse_signed_checkpoint(signed.to_line().replace(b'"}', b'" }'))
    with pytest.raises(InvalidCheckpointError, match="32 bytes"):
        sign_checkpoint(KEY, tree_size=1, root_hash=b"x", time=T0, node_id="n")
    with pytest.raises(InvalidCheckpointError, match="timezone"):
        sign_checkpoint(
            KEY,
            tree_size=1,
            root_hash=bytes(32),
            time=datetime(2025, 1, 1),
            node_id="n",
        )


@settings(max_examples=50, deadline=None)
@given(size=st.integers(0, 2**53 - 1), root_hash=st.binary(min_size=32, max_size=32))
def test_checkpoint_line_round_trips(size: int, root_hash: bytes) -> None:
    signed = sign_checkpoint(KEY, tree_size=size, root_hash=root_hash, time=T0, node_id="n")
    assert verify_checkpoint(parse_signed_checkpoint(signed.to_line()), PUB) == signed.checkpoint


# --- export writer -------------------------------------------------------------------


def test_writer_places_checkpoints_after_the_entries_they_cover() -> None:
    lines = lines_of(EXPORT20)
    assert lines[0] == verifier.EXPORT_HEADER
    assert lines[11].startswith(verifier.CHECKPOINT_PREFIX)
    assert lines[22].startswith(verifier.CHECKPOINT_PREFIX)
    assert len(lines) == 23
    out = io.BytesIO()
    assert write_export(out, LOG20.entries, [LOG20.checkpoint(20)]) == 20


def test_writer_refuses_what_cannot_be_an_export() -> None:
    with pytest.raises(ExportError, match="covers 21 entries"):
        list(export_lines(LOG20.entries, [LOG20.checkpoint(20), make_log(21).checkpoint(21)]))
    with pytest.raises(ExportError, match="one line"):
        build_export([b'{"a":\n1}'], [])


# --- the verifier: success -----------------------------------------------------------


def test_a_valid_export_verifies_and_reports_the_tree_head() -> None:
    result = verify_export(EXPORT20, PUB)
    assert result == VerifiedExport(
        entries=20,
        checkpoints=2,
        tree_size=20,
        root_hash=LOG20.tree.root().hex(),
        time=LOG20.checkpoint(20).checkpoint.time.isoformat().replace("+00:00", "Z"),
        node_id="ht-mspp",
        key_id=verifier.key_id(PUB),
        kept_tree_size=None,
    )
    assert verify_export(iter(EXPORT20.splitlines(keepends=True)), PUB) == result
    assert verify_export(EXPORT20.rstrip(b"\n"), PUB) == result  # last newline optional


def test_an_empty_log_with_a_checkpoint_verifies() -> None:
    result = verify_export(make_log(0).export(0), PUB)
    assert (result.entries, result.tree_size) == (0, 0)


# --- the verifier: every byte flip ---------------------------------------------------


def _line_spans(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each line including its newline, in file order."""
    spans, start = [], 0
    for line in data.split(b"\n")[:-1]:
        spans.append((start, start + len(line) + 1))
        start += len(line) + 1
    return spans


@pytest.mark.parametrize("mask", [0x01, 0x20, 0x80])
def test_every_flipped_byte_is_detected_and_entry_flips_name_the_entry(mask: int) -> None:
    spans = _line_spans(EXPORT20)
    entry_seq = {}
    for index, line in enumerate(lines_of(EXPORT20)):
        if index and not line.startswith(verifier.CHECKPOINT_PREFIX):
            entry_seq[index + 1] = len(entry_seq)
    missed, unnamed = [], []
    for lineno, (start, end) in enumerate(spans, start=1):
        for position in range(start, end):
            flipped = bytearray(EXPORT20)
            flipped[position] ^= mask
            try:
                verify_export(bytes(flipped), PUB)
            except VerificationError as exc:
                seq = entry_seq.get(lineno)
                if seq is not None and exc.line != lineno and exc.seq != seq:
                    unnamed.append((position, lineno, seq, str(exc)))
            else:
                missed.append(position)
    assert not missed, f"undetected flips at byte offsets {missed}"
    assert not unnamed, f"verdicts that do not name the flipped entry: {unnamed[:5]}"


@pytest.mark.parametrize("seq", [0, 5, 9, 10, 18, 19])
def test_a_modified_entry_is_named_by_seq_and_line(seq: int) -> None:
    lines = lines_of(EXPORT20)
    lineno = seq + 2 if seq < 10 else seq + 3
    lines[lineno - 1] = lines[lineno - 1].replace(b'"outcome":"', b'"outcome":"X')
    err = failure(join(lines))
    assert isinstance(err, EntryModifiedError)
    assert (err.seq, err.line) == (seq, lineno)
    assert f"entry seq {seq} (line {lineno}) was modified" in str(err)


def test_an_altered_prev_of_the_newest_entry_is_pinned_on_that_entry() -> None:
    lines = lines_of(EXPORT20)
    prev = leaf_hash(LOG20.entries[18]).hex().encode()
    lines[21] = lines[21].replace(prev, b"0" + prev[1:] if prev[:1] != b"0" else b"1" + prev[1:])
    err = failure(join(lines))
    assert isinstance(err, EntryModifiedError)
    assert err.seq == 19
    assert "prev was altered" in str(err)


# --- the verifier: removed, duplicated, reordered, inserted, truncated ---------------


def test_a_removed_entry_is_named() -> None:
    lines = lines_of(EXPORT20)
    del lines[8]  # entry seq 7
    err = failure(join(lines))
    assert isinstance(err, EntryRemovedError)
    assert err.seq == 7
    assert "entry seq 7 removed" in str(err)
    del lines[1]  # and seq 0
    assert isinstance(failure(join(lines)), EntryRemovedError)


def test_several_removed_entries_are_named_as_a_range() -> None:
    lines = lines_of(EXPORT20)
    del lines[13:16]  # entries seq 11..13
    err = failure(join(lines))
    assert isinstance(err, EntryRemovedError)
    assert "entries seq 11..13 removed" in str(err)


@pytest.mark.parametrize("where", [5, 12, 22])
def test_a_duplicated_entry_is_named(where: int) -> None:
    lines = lines_of(EXPORT20)
    lines.insert(where, lines[4])  # entry seq 3, line 5
    err = failure(join(lines))
    assert isinstance(err, EntryDuplicatedError)
    assert err.seq == 3
    assert "duplicates line 5" in str(err) or "line 5" in str(err)


@pytest.mark.parametrize(("a", "b"), [(1, 2), (5, 6), (2, 8), (13, 16), (20, 21)])
def test_swapped_entries_are_named_as_reordered(a: int, b: int) -> None:
    lines = lines_of(EXPORT20)
    lines[a], lines[b] = lines[b], lines[a]
    err = failure(join(lines))
    assert isinstance(err, EntryReorderedError)
    assert err.line == a + 1


def test_a_moved_entry_is_named_as_reordered() -> None:
    lines = lines_of(EXPORT20)
    moved = lines.pop(4)  # seq 3
    lines.insert(9, moved)
    assert isinstance(failure(join(lines)), EntryReorderedError)


def test_a_forged_entry_inserted_into_the_chain_is_named() -> None:
    lines = lines_of(EXPORT20)
    forged = encode_entry(  # type: ignore[arg-type]
        **fields(6, leaf_hash(LOG20.entries[5]).hex(), reason="nothing to see")
    )
    lines.insert(7, forged)  # before the real seq 6 (now line 9)
    err = failure(join(lines))
    assert isinstance(err, EntryInsertedError)
    assert err.line == 8
    assert err.seq == 6


def test_an_entry_with_an_unrelated_seq_inserted_is_named() -> None:
    lines = lines_of(EXPORT20)
    stray = encode_entry(**fields(99, "cd" * 32))  # type: ignore[arg-type]
    lines.insert(5, stray)
    err = failure(join(lines))
    assert isinstance(err, EntryInsertedError)
    assert err.line == 6


def test_an_entry_with_a_plausible_seq_but_a_foreign_prev_is_named_as_inserted() -> None:
    lines = lines_of(EXPORT20)
    lines.insert(7, encode_entry(**fields(6, "ef" * 32)))  # type: ignore[arg-type]
    err = failure(join(lines))
    assert isinstance(err, EntryInsertedError)
    assert err.line == 8


def test_entries_cut_from_the_end_are_named_against_the_exports_own_checkpoint() -> None:
    lines = lines_of(EXPORT20)
    del lines[19:22]  # entries seq 17..19, keeping the checkpoint of size 20
    err = failure(join(lines))
    assert isinstance(err, TruncatedLogError)
    assert err.seq == 17
    assert "entries seq 17..19 are missing" in str(err)


def test_a_truncated_file_fails() -> None:
    assert isinstance(failure(EXPORT20[:-40]), MalformedExportError)
    no_last_checkpoint = join(lines_of(EXPORT20)[:-1])
    err = failure(no_last_checkpoint)
    assert isinstance(err, UncoveredEntriesError)
    assert err.seq == 10
    assert "entries seq 10..19" in str(err)


def test_an_export_without_checkpoints_authenticates_nothing() -> None:
    assert isinstance(failure(LOG20.export()), UncoveredEntriesError)


def test_a_checkpoint_signed_by_another_key_is_refused() -> None:
    other = make_log(20, key=Ed25519PrivateKey.generate())
    lines = lines_of(EXPORT20)
    lines[-1] = other.checkpoint(20).to_line()
    err = failure(join(lines))
    assert isinstance(err, SignatureError)
    assert err.line == 23
    assert "neither the supplied key nor endorsed by it" in str(err)


def test_a_checkpoint_over_other_entries_is_a_mismatch_not_a_pass() -> None:
    lines = lines_of(EXPORT20)
    lines[11] = make_log(10, rewrite={4: "rewritten"}).checkpoint(10).to_line()
    err = failure(join(lines))
    assert isinstance(err, verifier.CheckpointMismatchError)
    assert err.line == 12


# --- the verifier: a checkpoint the auditor kept -------------------------------------

LOG30 = make_log(30)
KEPT20 = LOG30.checkpoint(20).to_line()


def test_an_extended_log_is_consistent_with_the_kept_checkpoint() -> None:
    result = verify_export(LOG30.export(10, 20, 30), PUB, KEPT20)
    assert result.kept_tree_size == 20
    assert result.tree_size == 30
    assert verify_export(make_log(20).export(20), PUB, KEPT20 + b"\n").kept_tree_size == 20


def test_history_rewritten_before_the_kept_checkpoint_is_caught() -> None:
    rewritten = make_log(30, rewrite={5: "a different decision"})  # re-chained, re-signed
    assert verify_export(rewritten.export(30), PUB)  # self-consistent on its own
    err = failure(rewritten.export(30), KEPT20)
    assert isinstance(err, RewrittenHistoryError)
    assert "first 20 entries do not match your kept checkpoint" in str(err)


def test_a_rolled_back_log_is_caught() -> None:
    shorter = make_log(15)
    assert verify_export(shorter.export(15), PUB)
    err = failure(shorter.export(15), KEPT20)
    assert isinstance(err, RollbackError)
    assert err.seq == 15
    assert "entries seq 15..19 are gone" in str(err)


def test_a_kept_checkpoint_with_a_bad_signature_is_refused() -> None:
    kept = make_log(20, key=Ed25519PrivateKey.generate()).checkpoint(20).to_line()
    assert isinstance(failure(LOG30.export(30), kept), SignatureError)
    assert isinstance(failure(LOG30.export(30), b"garbage"), MalformedExportError)


TEXT = st.text(
    st.characters(blacklist_categories=("Cc", "Cs")) | st.sampled_from('"\\/é€😀\u2028'),
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(
    texts=st.fixed_dictionaries(
        {k: TEXT.filter(bool) for k in ("actor", "role", "action", "resource", "outcome")}
    ),
    reason=TEXT,
    optional=st.tuples(st.none() | TEXT.filter(bool), st.none() | TEXT.filter(bool)),
    node_id=TEXT.filter(bool),
)
def test_the_verifier_accepts_every_entry_the_node_can_write(
    texts: dict[str, str],
    reason: str,
    optional: tuple[str | None, str | None],
    node_id: str,
) -> None:
    log = Log()
    for _ in range(3):
        log.append(
            **texts,
            reason=reason,
            policy_hash=optional[0],
            request_digest=optional[1],
            node_id=node_id,
        )
    checkpoint = sign_checkpoint(
        KEY, tree_size=3, root_hash=log.tree.root(), time=T0, node_id=node_id
    )
    result = verify_export(build_export(log.entries, [checkpoint]), PUB)
    assert result.entries == 3
    assert result.node_id == node_id


def test_non_canonical_entry_lines_are_refused_even_if_the_chain_holds() -> None:
    log = Log()
    log.entries.append(LOG20.entries[0].replace(b'"action":', b'"action": '))
    log.tree.append(leaf_hash(log.entries[0]))
    err = failure(log.export(1))
    assert isinstance(err, MalformedExportError)
    assert err.line == 2
    assert "canonical" in str(err)


def test_an_overlong_line_in_a_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "export.jsonl"
    path.write_bytes(EXPORT20[:200] + b"x" * 3_000_000 + EXPORT20[200:])
    with pytest.raises(MalformedExportError, match="longer than"):
        verifier.verify_export_file(path, PUB)
    path.write_bytes(EXPORT20)
    assert verifier.verify_export_file(path, PUB).entries == 20


# --- the verifier: hostile input never crashes ---------------------------------------

HOSTILE_LINES = [
    b"",
    b"{",
    b"null",
    b"[]",
    b'"\\ud800"',
    b"\xff\xfe",
    b"[" * 50_000 + b"]" * 50_000,
    b"[" * 30_000,
    b'{"seq":1e999}',
    b'{"seq":' + b"9" * 5000 + b"}",
    LOG20.entries[3].replace(b'"seq":3', b'"seq":' + b"9" * 5000),
    LOG20.entries[3].replace(b'"seq":3', b'"seq":1e400'),
    LOG20.entries[3].replace(b'"seq":3', b'"seq":true'),
    LOG20.entries[3].replace(b'"seq":3', b'"seq":18446744073709551616'),
    LOG20.entries[3].replace(b'"prev":"', b'"prev":"\\u0000'),
    LOG20.entries[3].replace(b'"node_id":"ht-mspp"', b'"node_id":null'),
    LOG20.entries[3] + b"garbage",
    LOG20.entries[3][:-1] + b',"seq":4}',
    verifier.CHECKPOINT_PREFIX,
    verifier.CHECKPOINT_PREFIX + b'{}"signature":"',
    verifier.CHECKPOINT_PREFIX + b'{},"signature":"' + b"A" * 86 + b'=="}',
    LOG20.checkpoint(5).to_line().replace(b'"tree_size":5', b'"tree_size":' + b"9" * 30),
    LOG20.checkpoint(5).to_line().replace(b'"tree_size":5', b'"tree_size":-1'),
    LOG20.checkpoint(5).to_line().replace(b'"tree_size":5', b'"tree_size":5.0'),
    b"x" * (verifier.MAX_LINE_BYTES + 10),
    verifier.EXPORT_HEADER,
]


def _assert_verdict(data: bytes | list[bytes]) -> None:
    try:
        result = verify_export(data, PUB)
    except VerificationError as exc:
        assert str(exc)
        assert exc.kind
    else:
        assert isinstance(result, VerifiedExport)


@pytest.mark.parametrize("line", HOSTILE_LINES)
@pytest.mark.parametrize("at", [0, 1, 5, 22])
def test_hostile_lines_end_in_a_verdict(line: bytes, at: int) -> None:
    lines = lines_of(EXPORT20)
    lines.insert(at, line)
    _assert_verdict(join(lines))
    lines[at] = line.replace(b"\n", b"")
    _assert_verdict(lines)


@pytest.mark.parametrize("data", [b"", b"\n", b"\n\n\n", b"\x00" * 100, EXPORT20 * 2])
def test_degenerate_files_end_in_a_verdict(data: bytes) -> None:
    err = failure(data)
    assert err.kind


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(data=st.binary(max_size=2000))
def test_random_bytes_end_in_a_verdict(data: bytes) -> None:
    _assert_verdict(data)
    _assert_verdict(verifier.EXPORT_HEADER + b"\n" + data)


@FUZZ
@given(cut=st.integers(0, len(EXPORT20)))
def test_every_truncation_ends_in_a_verdict(cut: int) -> None:
    _assert_verdict(EXPORT20[:cut])


@FUZZ
@given(st.data())
def test_duplicated_dropped_and_shuffled_lines_end_in_a_verdict(data: st.DataObject) -> None:
    lines = lines_of(EXPORT20)
    picks = data.draw(st.lists(st.integers(0, len(lines) - 1), max_size=40))
    mutated = [lines[i] for i in picks]
    _assert_verdict(join(mutated))


@FUZZ
@given(st.data())
def test_garbled_spans_end_in_a_verdict(data: st.DataObject) -> None:
    start = data.draw(st.integers(0, len(EXPORT20) - 1))
    length = data.draw(st.integers(1, 64))
    junk = data.draw(st.binary(min_size=1, max_size=length))
    garbled = EXPORT20[:start] + junk + EXPORT20[start + length :]
    _assert_verdict(garbled)


@FUZZ
@given(
    lines=st.lists(
        st.one_of(
            st.sampled_from([*lines_of(EXPORT20), *HOSTILE_LINES[:20]]),
            st.binary(max_size=200),
            st.recursive(
                st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                lambda inner: (
                    st.lists(inner, max_size=4)
                    | st.dictionaries(st.sampled_from(sorted(verifier.ENTRY_KEYS)), inner)
                ),
                max_leaves=20,
            ).map(lambda v: __import__("json").dumps(v).encode()),
        ),
        max_size=30,
    )
)
def test_random_lines_after_a_header_end_in_a_verdict(lines: list[bytes]) -> None:
    _assert_verdict(join([verifier.EXPORT_HEADER, *(x.replace(b"\n", b"") for x in lines)]))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 70), data=st.data())
def test_exports_of_any_size_verify_with_checkpoints_anywhere(n: int, data: st.DataObject) -> None:
    log = make_log(n)
    sizes = data.draw(st.lists(st.integers(0, n), max_size=4))
    result = verify_export(log.export(*sizes, n), PUB)
    assert result.tree_size == n
    assert result.root_hash == log.tree.root().hex()


# --- the standalone file and its command line ----------------------------------------


def test_verifier_imports_only_the_standard_library_and_cryptography() -> None:
    tree = ast.parse(Path(verifier.__file__).read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0
            assert node.module
            roots.add(node.module.split(".")[0])
    assert roots - sys.stdlib_module_names == {"cryptography"}


@pytest.fixture
def auditor_dir(tmp_path: Path) -> Path:
    """A directory holding only the copied verifier, the export and the public key."""
    shutil.copy(verifier.__file__, tmp_path / "verifier.py")
    (tmp_path / "export.jsonl").write_bytes(LOG30.export(10, 30))
    (tmp_path / "kept.json").write_bytes(KEPT20 + b"\n")
    pem = PUB.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "node.pem").write_bytes(pem)
    return tmp_path


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-I", "verifier.py", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_copied_file_runs_standalone(auditor_dir: Path) -> None:
    ok = _run(auditor_dir, "export.jsonl", "--public-key", "node.pem", "--checkpoint", "kept.json")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("OK: 30 entries, 2 checkpoints; verified tree head: size 30")
    assert "consistent with the kept checkpoint of size 20" in ok.stdout
    tampered = (auditor_dir / "export.jsonl").read_bytes().replace(b"release/7", b"release/8")
    (auditor_dir / "export.jsonl").write_bytes(tampered)
    bad = _run(auditor_dir, "export.jsonl", "--public-key", "node.pem")
    assert bad.returncode == 1
    assert bad.stdout.startswith("FAILED [entry-modified]: entry seq 7 (line 9)")


def test_main_exit_codes(auditor_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    export, pem = str(auditor_dir / "export.jsonl"), str(auditor_dir / "node.pem")
    raw_hex = auditor_dir / "node.hex"
    raw_hex.write_text(PUB.public_bytes_raw().hex())
    assert verifier.main([export, "--public-key", pem]) == 0
    assert verifier.main([export, "--public-key", str(raw_hex)]) == 0
    rollback = auditor_dir / "short.jsonl"
    rollback.write_bytes(make_log(12).export(12))
    kept = str(auditor_dir / "kept.json")
    assert verifier.main([str(rollback), "--public-key", pem, "--checkpoint", kept]) == 1
    assert "FAILED [rollback]" in capsys.readouterr().out
    assert verifier.main([export, "--public-key", str(auditor_dir / "missing")]) == 2
    assert verifier.main([str(auditor_dir / "missing"), "--public-key", pem]) == 2
    assert verifier.main([export, "--public-key", export]) == 2  # not a key
