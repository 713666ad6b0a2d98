"""The node and the standalone verifier compute the same things for the same inputs.

`nodes/audit/verifier.py` must stay one copyable file, so it re-implements what the node
computes (key ids, checkpoint bytes, leaf hashes, Merkle roots) instead of importing it.
These tests hold the twins together: if either side drifts, an auditor's verdict would
differ from the node's, and a test here fails. The verifier's tree code is private
(``_Entries``, ``_perfect_levels``, ``_root_at``); it is reached on purpose, since that is
the code an auditor runs. Fault-by-fault export verdicts live in tests/test_audit_verifier.py.
"""

from __future__ import annotations

import base64
import hashlib
import inspect
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from nodes import identity
from nodes.audit import checkpoint as node_checkpoint
from nodes.audit import merkle, verifier
from nodes.audit.entry import AuditEntry, encode_entry, entry_leaf_hash, prev_for
from nodes.audit.errors import InvalidCheckpointError, InvalidProofError
from nodes.audit.export_format import build_export

T0 = datetime(2025, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PUB = KEY.public_key()

seeds = st.binary(min_size=32, max_size=32)
# Checkpoint text as the node accepts it: non-empty, no control characters, bounded.
texts = st.text(
    st.characters(max_codepoint=0x2FFF, exclude_categories=("Cc", "Cs")), min_size=1, max_size=40
)


def public(seed: bytes) -> Ed25519PublicKey:
    return Ed25519PrivateKey.from_private_bytes(seed).public_key()


def entries(n: int, reason: str = "ok") -> list[bytes]:
    """``n`` chained entries, written the way the node writes them."""
    out: list[bytes] = []
    for seq in range(n):
        out.append(
            encode_entry(
                seq=seq,
                time=T0 + timedelta(seconds=seq),
                actor="partner:fr",
                role="partner",
                action="pull",
                resource=f"release/{seq}",
                outcome="allowed",
                reason=reason,
                policy_hash=None,
                request_digest=None,
                prev=prev_for(entry_leaf_hash(out[-1]) if out else None),
                node_id="ht-mspp",
            )
        )
    return out


def _not_an_entry(line: bytes, lineno: int) -> None:
    raise AssertionError(f"line {lineno} was read as a checkpoint or key line")


def verifier_leaves(lines: list[bytes]) -> list[bytes]:
    """Leaf hashes as the verifier computes them while reading an export's entry lines."""
    read = verifier._Entries()
    read.read(enumerate(lines, start=2), _not_an_entry, _not_an_entry)
    assert read.break_at is None, "the verifier saw a break in the node's chain"
    return read.hashes


def verifier_roots(leaves: list[bytes]) -> list[bytes]:
    """The verifier's root at every size 0..len(leaves)."""
    levels = verifier._perfect_levels(leaves)
    return [verifier._root_at(levels, size) for size in range(len(leaves) + 1)]


# --- key ids -------------------------------------------------------------------------


@settings(max_examples=50)
@given(seed=seeds)
def test_key_ids_agree_and_are_the_base64url_digest_of_the_raw_key(seed: bytes) -> None:
    key = public(seed)
    kid = identity.key_id(key)
    assert verifier.key_id(key) == kid
    digest = hashlib.sha256(identity.raw_public(key)).digest()
    assert base64.urlsafe_b64decode(kid + "=") == digest
    assert len(kid) == 43
    assert verifier.key_id_matches(key, kid)
    assert verifier.key_id_matches(key, digest.hex()), "the pre-format-2 hex spelling is read"


@settings(max_examples=30)
@given(seed=seeds, other=seeds)
def test_a_key_id_names_only_its_own_key(seed: bytes, other: bytes) -> None:
    key, stranger = public(seed), public(other)
    same = identity.raw_public(key) == identity.raw_public(stranger)
    assert verifier.key_id_matches(key, identity.key_id(stranger)) is same
    raw = identity.raw_public(stranger)
    assert verifier.key_id_matches(key, hashlib.sha256(raw).hexdigest()) is same


@settings(max_examples=30)
@given(seed=seeds)
def test_both_sides_read_the_public_key_text_the_descriptor_publishes(seed: bytes) -> None:
    key = public(seed)
    text = identity.public_key_text(key)
    from_node = identity.parse_public_key(text)
    from_verifier = verifier.load_public_key(text.encode())
    assert identity.raw_public(from_verifier) == identity.raw_public(from_node)
    assert verifier.key_id(from_verifier) == identity.key_id(from_node)


# --- checkpoints ---------------------------------------------------------------------


def test_both_verify_checkpoint_functions_take_the_checkpoint_first_then_the_key() -> None:
    for function in (node_checkpoint.verify_checkpoint, verifier.verify_checkpoint):
        first, second = list(inspect.signature(function).parameters)
        assert second == "public_key", function.__module__
        assert first in {"signed", "checkpoint"}, function.__module__


@settings(max_examples=50, deadline=None)
@given(
    size=st.integers(0, verifier.MAX_COUNT),
    root_hash=st.binary(min_size=32, max_size=32),
    node_id=texts,
    seconds=st.integers(0, 10**9),
)
def test_a_checkpoint_the_node_signs_is_the_one_the_verifier_reads_and_accepts(
    size: int, root_hash: bytes, node_id: str, seconds: int
) -> None:
    time = T0 + timedelta(seconds=seconds, microseconds=seconds % 7)
    signed = node_checkpoint.sign_checkpoint(
        KEY, tree_size=size, root_hash=root_hash, time=time, node_id=node_id
    )
    parsed = verifier.parse_checkpoint_line(signed.to_line())
    assert parsed.body == signed.body == signed.checkpoint.to_bytes()
    assert (parsed.tree_size, parsed.root_hash) == (size, root_hash.hex())
    assert (parsed.node_id, parsed.key_id) == (node_id, identity.key_id(PUB))
    assert parsed.signature == signed.signature
    verifier.verify_checkpoint(parsed, PUB)
    with pytest.raises(verifier.SignatureError):
        verifier.verify_checkpoint(parsed, public(bytes(32)))


@settings(max_examples=30, deadline=None)
@given(size=st.integers(0, verifier.MAX_COUNT), root_hash=st.binary(min_size=32, max_size=32))
def test_a_line_built_from_the_verifiers_format_is_read_and_verified_by_the_node(
    size: int, root_hash: bytes
) -> None:
    """The reverse direction: the verifier's constants alone make a line the node accepts."""
    body = (
        f'{{"key_id":"{verifier.key_id(PUB)}","node_id":"ht-mspp","root_hash":"{root_hash.hex()}",'
        f'"time":"2025-03-04T05:06:07.123456Z","tree_size":{size},'
        f'"type":"{verifier.CHECKPOINT_TYPE}"}}'
    ).encode()
    line = (
        verifier.CHECKPOINT_PREFIX
        + body
        + verifier.SIGNATURE_SEPARATOR
        + base64.b64encode(KEY.sign(body))
        + verifier.CHECKPOINT_SUFFIX
    )
    signed = node_checkpoint.parse_signed_checkpoint(line)
    checkpoint = node_checkpoint.verify_checkpoint(signed, PUB)
    assert (checkpoint.tree_size, checkpoint.root_hash, checkpoint.time) == (
        size,
        root_hash.hex(),
        T0,
    )
    assert signed.to_line() == line
    with pytest.raises(InvalidCheckpointError, match="does not verify"):
        node_checkpoint.verify_checkpoint(signed, public(bytes(32)))


def test_a_tampered_checkpoint_fails_on_both_sides() -> None:
    signed = node_checkpoint.sign_checkpoint(
        KEY, tree_size=5, root_hash=bytes(32), time=T0, node_id="ht-mspp"
    )
    forged = signed.to_line().replace(b'"tree_size":5', b'"tree_size":6')
    with pytest.raises(InvalidCheckpointError, match="does not verify"):
        node_checkpoint.verify_checkpoint(node_checkpoint.parse_signed_checkpoint(forged), PUB)
    with pytest.raises(verifier.SignatureError):
        verifier.verify_checkpoint(verifier.parse_checkpoint_line(forged), PUB)


# --- leaves, roots and proofs --------------------------------------------------------


@settings(max_examples=20, deadline=None)
@given(n=st.integers(0, 40), reason=texts)
def test_leaf_hashes_and_roots_at_every_size_agree(n: int, reason: str) -> None:
    lines = entries(n, reason)
    leaves = verifier_leaves(lines)
    assert leaves == [entry_leaf_hash(line) for line in lines]
    assert leaves == [AuditEntry.from_bytes(line).leaf_hash() for line in lines]
    tree = merkle.MerkleTree(leaves)
    roots = verifier_roots(leaves)
    assert roots == [tree.root(size) for size in range(n + 1)]
    assert roots[-1] == merkle.root(leaves)
    assert roots[0] == merkle.EMPTY_ROOT == verifier.EMPTY_ROOT


@settings(max_examples=30, deadline=None)
@given(data=st.data(), n=st.integers(1, 70))
def test_node_proofs_lead_to_the_roots_the_verifier_computes(n: int, data: st.DataObject) -> None:
    leaves = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(n)]
    tree, roots = merkle.MerkleTree(leaves), verifier_roots(leaves)
    size = data.draw(st.integers(1, n), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    merkle.verify_inclusion(
        leaves[index], index, size, tree.inclusion_proof(index, size), roots[size]
    )
    old = data.draw(st.integers(0, size), label="old")
    proof = tree.consistency_proof(old, size)
    merkle.verify_consistency(old, size, roots[old], roots[size], proof)


@settings(max_examples=20, deadline=None)
@given(data=st.data(), n=st.integers(1, 30))
def test_the_verifier_and_the_consistency_proof_agree_on_which_logs_extend_a_kept_one(
    n: int, data: st.DataObject
) -> None:
    """A kept checkpoint passes the export exactly when the node's consistency proof does."""
    old = data.draw(st.integers(1, n), label="old")
    rewritten = data.draw(st.booleans(), label="rewritten")
    before = entries(old)
    after = entries(n, "rewritten") if rewritten else entries(n)
    old_tree = merkle.MerkleTree(entry_leaf_hash(line) for line in before)
    new_tree = merkle.MerkleTree(entry_leaf_hash(line) for line in after)

    def sign(tree: merkle.MerkleTree) -> node_checkpoint.SignedCheckpoint:
        return node_checkpoint.sign_checkpoint(
            KEY, tree_size=tree.size, root_hash=tree.root(), time=T0, node_id="ht-mspp"
        )

    kept = sign(old_tree).to_line()
    proof = new_tree.consistency_proof(old)
    node_agrees = True
    try:
        merkle.verify_consistency(old, n, old_tree.root(), new_tree.root(), proof)
    except InvalidProofError:
        node_agrees = False
    assert node_agrees is not rewritten
    export = build_export(after, [sign(new_tree)])
    if rewritten:
        with pytest.raises(verifier.RewrittenHistoryError):
            verifier.verify_export(export, PUB, kept)
    else:
        assert verifier.verify_export(export, PUB, kept).kept_tree_size == old
