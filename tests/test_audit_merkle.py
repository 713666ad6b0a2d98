"""RFC 6962 / RFC 9162 Merkle tree: known answers, the RFC's definitions, proofs."""

from __future__ import annotations

import hashlib
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nodes.audit import verifier
from nodes.audit.errors import InvalidProofError
from nodes.audit.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    leaf_hash,
    node_hash,
    root,
    root_from_inclusion_proof,
    verify_consistency,
    verify_inclusion,
)

# Known answers from transparency-dev/merkle (rfc6962/rfc6962_test.go and
# proof/verify_test.go), the Go library behind Certificate Transparency logs.
KAT_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    bytes(range(0x50, 0x58)),
    bytes(range(0x60, 0x70)),
]
KAT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# (leaf index, tree size, proof); the Go vectors count leaves from 1.
KAT_INCLUSION = [
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
KAT_CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]

KAT_TREE = MerkleTree([leaf_hash(d) for d in KAT_LEAVES])


def _hashes(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


# Reference: RFC 9162 §2.1.1, §2.1.3.1 and §2.1.4.1 transcribed recursively.
def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def _mth(d: list[bytes]) -> bytes:
    if not d:
        return EMPTY_ROOT
    if len(d) == 1:
        return d[0]
    k = _k(len(d))
    return node_hash(_mth(d[:k]), _mth(d[k:]))


def _path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return [*_path(m, d[:k]), _mth(d[k:])]
    return [*_path(m - k, d[k:]), _mth(d[:k])]


def _subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    if m == len(d):
        return [] if b else [_mth(d)]
    k = _k(len(d))
    if m <= k:
        return [*_subproof(m, d[:k], b), _mth(d[k:])]
    return [*_subproof(m - k, d[k:], False), _mth(d[:k])]


def test_hashes_match_known_answers() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert leaf_hash(b"").hex() == (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )
    assert leaf_hash(b"L123456").hex() == (
        "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
    )
    assert node_hash(b"N123", b"N456").hex() == (
        "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb"
    )


@pytest.mark.parametrize("size", range(1, 9))
def test_roots_match_known_answers(size: int) -> None:
    assert KAT_TREE.root(size).hex() == KAT_ROOTS[size - 1]


@pytest.mark.parametrize(("index", "size", "proof"), KAT_INCLUSION)
def test_inclusion_proofs_match_known_answers(index: int, size: int, proof: list[str]) -> None:
    expected = [bytes.fromhex(h) for h in proof]
    assert KAT_TREE.inclusion_proof(index, size) == expected
    root_hash = bytes.fromhex(KAT_ROOTS[size - 1])
    verify_inclusion(leaf_hash(KAT_LEAVES[index]), index, size, expected, root_hash)


@pytest.mark.parametrize(("old", "new", "proof"), KAT_CONSISTENCY)
def test_consistency_proofs_match_known_answers(old: int, new: int, proof: list[str]) -> None:
    expected = [bytes.fromhex(h) for h in proof]
    assert KAT_TREE.consistency_proof(old, new) == expected
    old_root, new_root = (bytes.fromhex(KAT_ROOTS[s - 1]) for s in (old, new))
    verify_consistency(old, new, old_root, new_root, expected)


def test_every_proof_matches_the_rfc_definitions_up_to_40_leaves() -> None:
    hashes = _hashes(40)
    tree = MerkleTree(hashes)
    for n in range(41):
        d = hashes[:n]
        assert tree.root(n) == _mth(d) == root(d)
        for m in range(n):
            assert tree.inclusion_proof(m, n) == _path(m, d)
        for m in range(1, n):
            assert tree.consistency_proof(m, n) == _subproof(m, d, True)


def test_appending_gives_the_same_tree_as_building() -> None:
    hashes = _hashes(300)
    grown = MerkleTree()
    for i, h in enumerate(hashes):
        grown.append(h)
        if i % 37 == 0:
            assert grown.root() == MerkleTree(hashes[: i + 1]).root()
    assert grown.consistency_proof(123) == MerkleTree(hashes).consistency_proof(123)


def test_root_of_100_000_leaves_is_fast_and_matches_the_verifier() -> None:
    hashes = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(100_000)]
    start = time.perf_counter()
    tree_root = root(hashes)
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0, f"{elapsed:.2f}s for 100,000 leaves"
    levels = verifier._perfect_levels(hashes)
    assert verifier._root_at(levels, 100_000) == tree_root
    assert verifier._root_at(levels, 65_537) == MerkleTree(hashes).root(65_537)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), n=st.integers(1, 600))
def test_inclusion_proofs_verify_and_any_altered_byte_fails(data: st.DataObject, n: int) -> None:
    hashes = _hashes(n)
    tree = MerkleTree(hashes)
    index = data.draw(st.integers(0, n - 1))
    proof = tree.inclusion_proof(index)
    verify_inclusion(hashes[index], index, n, proof, tree.root())
    if proof:
        i = data.draw(st.integers(0, len(proof) - 1))
        byte = data.draw(st.integers(0, 31))
        bit = data.draw(st.integers(0, 7))
        bad = list(proof)
        bad[i] = bytes(b ^ (1 << bit) if j == byte else b for j, b in enumerate(bad[i]))
        with pytest.raises(InvalidProofError):
            verify_inclusion(hashes[index], index, n, bad, tree.root())
        with pytest.raises(InvalidProofError):
            verify_inclusion(hashes[index], index, n, proof[:-1], tree.root())
    with pytest.raises(InvalidProofError):
        verify_inclusion(hashes[index], index, n, [*proof, tree.root()], tree.root())
    with pytest.raises(InvalidProofError):
        verify_inclusion(leaf_hash(b"forged"), index, n, proof, tree.root())


@settings(max_examples=150, deadline=None)
@given(data=st.data(), n=st.integers(1, 600))
def test_consistency_proofs_verify_and_any_altered_byte_fails(data: st.DataObject, n: int) -> None:
    hashes = _hashes(n)
    tree = MerkleTree(hashes)
    m = data.draw(st.integers(0, n))
    proof = tree.consistency_proof(m)
    old_root, new_root = tree.root(m), tree.root()
    verify_consistency(m, n, old_root, new_root, proof)
    if proof:
        i = data.draw(st.integers(0, len(proof) - 1))
        byte = data.draw(st.integers(0, 31))
        bad = list(proof)
        bad[i] = bytes(b ^ 0x01 if j == byte else b for j, b in enumerate(bad[i]))
        with pytest.raises(InvalidProofError):
            verify_consistency(m, n, old_root, new_root, bad)
        with pytest.raises(InvalidProofError):
            verify_consistency(m, n, old_root, new_root, proof[:-1])
    if 0 < m < n:
        forged = MerkleTree([*hashes[: m - 1], leaf_hash(b"forged"), *hashes[m:]])
        with pytest.raises(InvalidProofError):
            verify_consistency(m, n, old_root, forged.root(), proof)
        with pytest.raises(InvalidProofError):
            verify_consistency(m, n, forged.root(m), new_root, proof)
    with pytest.raises(InvalidProofError):
        verify_consistency(m, n, old_root, new_root, [*proof, new_root])


@pytest.mark.parametrize(
    ("old", "new", "old_root", "new_root", "proof"),
    [
        (2, 1, EMPTY_ROOT, EMPTY_ROOT, []),  # time travel to the past
        (1, 2, EMPTY_ROOT, EMPTY_ROOT, []),  # a real step with an empty proof
        (0, 1, b"\x01" * 32, EMPTY_ROOT, []),  # size 0 must have the empty root
        (1, 1, EMPTY_ROOT, b"\x01" * 32, []),  # same size, different roots
        (1, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT]),  # same size, a proof anyway
        (1, 2, EMPTY_ROOT, EMPTY_ROOT, [b"short"]),  # malformed hash
        (True, 2, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT]),  # a bool is not a size
    ],
)
def test_inconsistent_or_malformed_arguments_are_refused(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: list[bytes]
) -> None:
    with pytest.raises(InvalidProofError):
        verify_consistency(old, new, old_root, new_root, proof)


def test_proof_requests_outside_the_tree_are_refused() -> None:
    tree = MerkleTree(_hashes(5))
    with pytest.raises(ValueError, match="outside"):
        tree.inclusion_proof(5)
    with pytest.raises(ValueError, match="outside"):
        tree.root(6)
    with pytest.raises(ValueError, match="no consistency proof"):
        tree.consistency_proof(4, 3)
    with pytest.raises(ValueError, match="32 bytes"):
        MerkleTree([b"too short"])
    with pytest.raises(InvalidProofError):
        root_from_inclusion_proof(EMPTY_ROOT, 0, 0, [])
