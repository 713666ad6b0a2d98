"""RFC 6962 / RFC 9162 Merkle tree hashing, inclusion and consistency proofs.

The tree is Certificate Transparency's, so any CT tooling can check our roots
and proofs: a leaf hashes as ``SHA-256(0x00 || data)``, an interior node as
``SHA-256(0x01 || left || right)``, and a tree of ``n`` leaves splits at the
largest power of two smaller than ``n`` (RFC 9162 §2.1.1). The prefixes keep a
leaf from ever being mistaken for an interior node.

`MerkleTree` keeps the hash of every complete ("perfect") subtree, level by
level. Every range the RFC's recursive definitions visit starts on a boundary
of its own largest power of two, so it is a handful of perfect subtrees: a
root, an inclusion proof or a consistency proof costs O(log n) hashes once the
levels are built, and building them costs n - 1 hashes done a level at a time
(no recursion per leaf). Verification follows RFC 9162 §2.1.3.2 and §2.1.4.2
step by step; it raises `InvalidProofError` and never returns False.

The same decomposition serves a tree kept in a database: `inclusion_ranges` and
`consistency_ranges` name the leaf ranges a proof needs, `subtrees` the perfect
subtrees each range folds from (`fold`), and `Frontier` extends a tree from its
O(log n) right edge, reporting each subtree it completes so it can be stored.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from nodes.audit.errors import InvalidProofError

HASH_SIZE = 32
#: MTH({}) = SHA-256 of the empty string (RFC 9162 §2.1.1).
EMPTY_ROOT = hashlib.sha256(b"").digest()

_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """Hash one leaf's bytes: ``SHA-256(0x00 || data)``."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash two children: ``SHA-256(0x01 || left || right)``."""
    return _sha256(b"\x01" + left + right).digest()


def _split(size: int) -> int:
    """Largest power of two strictly smaller than ``size`` (``size >= 2``)."""
    return 1 << ((size - 1).bit_length() - 1)


class MerkleTree:
    """An append-only RFC 6962 tree over leaf hashes, with proofs at any size.

    ``levels[h][j]`` is the hash of the perfect subtree of ``2**h`` leaves
    starting at leaf ``j * 2**h``. Appending is amortized O(1).
    """

    __slots__ = ("_levels",)

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        level = list(leaf_hashes)
        for item in level:
            _check_hash(item, "leaf hash", ValueError)
        self._levels: list[list[bytes]] = [level]
        while len(level) > 1:
            sha = _sha256
            level = [
                sha(b"\x01" + a + b).digest() for a, b in zip(level[::2], level[1::2], strict=False)
            ]
            self._levels.append(level)

    @property
    def size(self) -> int:
        """Number of leaves."""
        return len(self._levels[0])

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash, completing whichever perfect subtrees it closes."""
        _check_hash(leaf, "leaf hash", ValueError)
        height, node = 0, leaf
        while True:
            if height == len(self._levels):
                self._levels.append([])
            level = self._levels[height]
            level.append(node)
            if len(level) % 2:
                return
            node = node_hash(level[-2], level[-1])
            height += 1

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (all leaves if omitted)."""
        size = self._size_arg(size)
        return EMPTY_ROOT if size == 0 else self._range(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[size]) of RFC 9162 §2.1.3.1, leaf sibling first.

        Raises ValueError if ``index`` is not a leaf of the tree of ``size``.
        """
        return [self._range(lo, hi) for lo, hi in inclusion_ranges(index, self._size_arg(size))]

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """PROOF(old_size, D[new_size]) of RFC 9162 §2.1.4.1.

        Empty when ``old_size`` is 0 or equals ``new_size``: there is nothing
        to prove. Raises ValueError if ``old_size > new_size``.
        """
        ranges = consistency_ranges(old_size, self._size_arg(new_size))
        return [self._range(lo, hi) for lo, hi in ranges]

    def _size_arg(self, size: int | None) -> int:
        if size is None:
            return self.size
        if type(size) is not int or not 0 <= size <= self.size:
            raise ValueError(f"tree size {size} is outside 0..{self.size}")
        return size

    def _range(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]) for a range aligned as the RFC recursion produces."""
        return fold([self._levels[h][j] for h, j in subtrees(lo, hi)])


def subtrees(lo: int, hi: int) -> list[tuple[int, int]]:
    """The perfect subtrees ``(height, index)`` that make up ``D[lo:hi]``, left to right.

    ``(h, j)`` covers leaves ``j * 2**h`` to ``(j + 1) * 2**h - 1``. Valid for the ranges
    the RFC recursion visits (and any prefix ``D[0:n]``); `fold` turns their hashes into
    MTH(D[lo:hi]). A stored tree fetches exactly these hashes and nothing else.
    """
    pieces: list[tuple[int, int]] = []
    width = hi - lo
    for height in range(width.bit_length() - 1, -1, -1):
        if width >> height & 1:
            pieces.append((height, lo >> height))
            lo += 1 << height
    return pieces


def fold(hashes: Sequence[bytes]) -> bytes:
    """Combine perfect-subtree hashes, left to right, into their range's root (right first)."""
    acc = hashes[-1]
    for left in reversed(hashes[:-1]):
        acc = node_hash(left, acc)
    return acc


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose roots form PATH(index, D[size]), in proof order.

    Raises ValueError if ``index`` is not a leaf of a tree of ``size``.
    """
    if type(index) is not int or type(size) is not int or not 0 <= index < size:
        raise ValueError(f"leaf index {index} is outside a tree of size {size}")
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
    ranges.reverse()
    return ranges


def consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose roots form PROOF(old_size, D[new_size]), in proof order.

    Raises ValueError unless ``0 <= old_size <= new_size``.
    """
    if type(old_size) is not int or type(new_size) is not int or not 0 <= old_size <= new_size:
        raise ValueError(f"no consistency proof from size {old_size} to {new_size}")
    if old_size in (0, new_size):
        return []
    ranges: list[tuple[int, int]] = []
    lo, hi, complete = 0, new_size, True
    while old_size != hi:
        k = _split(hi - lo)
        if old_size <= lo + k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
            complete = False
    if not complete:
        ranges.append((lo, hi))
    ranges.reverse()
    return ranges


class Frontier:
    """The right edge of a growing tree: the roots of its perfect subtrees, largest first.

    This is all a tree needs to keep to extend itself and give its root (RFC 9162's
    "compact range" from 0): O(log n) hashes. `append` reports each perfect subtree a leaf
    completes, so a store can save them as it goes; `root` folds the edge.
    """

    __slots__ = ("_edge", "_size")

    def __init__(self, size: int = 0, edge: Sequence[bytes] = ()) -> None:
        """``edge`` holds the hashes of `subtrees` ``(0, size)``, in that order.

        Raises ValueError if their number does not match ``size``.
        """
        expected = subtrees(0, size)
        if len(edge) != len(expected):
            raise ValueError(f"a tree of size {size} has {len(expected)} edge subtrees")
        for item in edge:
            _check_hash(item, "edge hash", ValueError)
        self._size = size
        self._edge = [(h, j, e) for (h, j), e in zip(expected, edge, strict=True)]

    @property
    def size(self) -> int:
        """Number of leaves."""
        return self._size

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add one leaf hash; return the ``(height, index, hash)`` subtrees it completed."""
        _check_hash(leaf, "leaf hash", ValueError)
        edge = self._edge
        node = (0, self._size, leaf)
        completed: list[tuple[int, int, bytes]] = []
        while edge and edge[-1][0] == node[0]:
            height, index, left = edge.pop()
            node = (height + 1, index >> 1, node_hash(left, node[2]))
            completed.append(node)
        edge.append(node)
        self._size += 1
        return completed

    @property
    def edge(self) -> list[tuple[int, int, bytes]]:
        """The ``(height, index, hash)`` of each edge subtree, as `subtrees` (0, size) orders them."""
        return list(self._edge)

    def root(self) -> bytes:
        """MTH of all leaves so far (``EMPTY_ROOT`` for none)."""
        return fold([e for _h, _j, e in self._edge]) if self._edge else EMPTY_ROOT


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH over the given leaf hashes (``EMPTY_ROOT`` for none)."""
    return MerkleTree(leaf_hashes).root()


def root_from_inclusion_proof(
    leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes]
) -> bytes:
    """Recompute the root an inclusion proof leads to (RFC 9162 §2.1.3.2 steps 1-4).

    Raises InvalidProofError if the proof cannot be a proof for this index and size.
    """
    _check_hash(leaf, "leaf hash")
    if type(index) is not int or type(tree_size) is not int or not 0 <= index < tree_size:
        raise InvalidProofError(f"leaf index {index} is outside a tree of size {tree_size}")
    fn, sn, r = index, tree_size - 1, leaf
    for p in proof:
        _check_hash(p, "proof hash")
        if sn == 0:
            raise InvalidProofError("inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise InvalidProofError("inclusion proof is shorter than the tree is deep")
    return r


def verify_inclusion(
    leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes], root_hash: bytes
) -> None:
    """Check that ``leaf`` is leaf ``index`` of the tree of ``tree_size`` with ``root_hash``.

    Raises InvalidProofError on any mismatch.
    """
    _check_hash(root_hash, "root hash")
    if root_from_inclusion_proof(leaf, index, tree_size, proof) != root_hash:
        raise InvalidProofError("inclusion proof does not lead to the root hash")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree (new_size, new_root) extends (old_size, old_root).

    Follows RFC 9162 §2.1.4.2 for ``0 < old_size < new_size``. Equal sizes need
    an empty proof and equal roots; size 0 needs an empty proof and
    ``old_root == EMPTY_ROOT``. Raises InvalidProofError otherwise.
    """
    _check_hash(old_root, "old root")
    _check_hash(new_root, "new root")
    if type(old_size) is not int or type(new_size) is not int or not 0 <= old_size <= new_size:
        raise InvalidProofError(f"no tree of size {new_size} can extend one of size {old_size}")
    if old_size in (0, new_size):
        expected = EMPTY_ROOT if old_size == 0 else new_root
        if proof or old_root != expected:
            raise InvalidProofError(f"trees of sizes {old_size} and {new_size} are inconsistent")
        return
    path = list(proof)
    for p in path:
        _check_hash(p, "proof hash")
    if not path:
        raise InvalidProofError("consistency proof is empty")
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise InvalidProofError("consistency proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0 or fr != old_root or sr != new_root:
        raise InvalidProofError(f"trees of sizes {old_size} and {new_size} are inconsistent")


def _check_hash(value: object, what: str, error: type[ValueError] = InvalidProofError) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise error(f"{what} must be {HASH_SIZE} bytes")
