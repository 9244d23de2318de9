"""A compact sparse Merkle tree: the state root and its account proofs.

Keys are 32-byte hashes, so leaves spread evenly and the tree depth is about
log2(number of entries). The shape is a function of the key set alone (a
subtree holding one entry *is* that entry's leaf, an empty subtree is empty),
so the root does not depend on insertion order. Nodes are immutable: an
update returns a new tree sharing every untouched subtree with the old one,
so a block's new root costs O(changed keys * depth) hashes, and readers of the
old tree (RPC proofs against the current head) are never disturbed.

    leaf   = sha256(0x00 || key || value_hash)
    branch = sha256(0x01 || left || right)       empty child = 32 zero bytes
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

EMPTY_HASH: Final = bytes(32)
_new_sha256: Final = hashlib.sha256


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def compute_leaf_hash(key: bytes, value_hash: bytes) -> bytes:
    return _sha256(b"\x00" + key + value_hash)


def compute_branch_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right)


def get_key_bit(key: bytes, depth: int) -> int:
    return (key[depth >> 3] >> (7 - (depth & 7))) & 1


class _Leaf:
    __slots__ = ("hash", "key", "value_hash")
    key: bytes
    value_hash: bytes
    hash: bytes

    def __init__(self, key: bytes, value_hash: bytes) -> None:
        self.key = key
        self.value_hash = value_hash
        self.hash = _new_sha256(b"\x00" + key + value_hash).digest()  # compute_leaf_hash, inlined


class _Branch:
    __slots__ = ("hash", "left", "right")
    left: _Node
    right: _Node
    hash: bytes

    def __init__(self, left: _Node, right: _Node) -> None:
        self.left = left
        self.right = right
        # compute_branch_hash, inlined: the tree's hot path (a block's update builds thousands)
        self.hash = _new_sha256(
            b"\x01" + (EMPTY_HASH if left is None else left.hash) + (EMPTY_HASH if right is None else right.hash)
        ).digest()


_Node = _Leaf | _Branch | None


def _join(left: _Node, right: _Node) -> _Node:
    """Canonical parent of two subtrees: one-entry subtrees collapse into their leaf."""
    if left is None:
        if right is None or type(right) is _Leaf:
            return right
    elif right is None and type(left) is _Leaf:
        return left
    return _Branch(left, right)


class _Batch:
    """One update's changes sorted by key, with the keys as integers: the changes under a subtree are a
    contiguous run ``[lo, hi)``, split at a bit by one C bisection (no per-key bit tests)."""

    __slots__ = ("grown", "ints", "keys", "values")

    def __init__(self, items: Sequence[tuple[bytes, bytes | None]]) -> None:
        self.keys = [k for k, _ in items]
        self.values = [v for _, v in items]
        self.ints = [int.from_bytes(k, "big") for k in self.keys]
        self.grown = 0
        """Entries added minus entries removed so far (the tree's new size)."""

    def split(self, lo: int, hi: int, depth: int) -> int:
        """Index of the first change in ``[lo, hi)`` whose key has bit 1 at ``depth`` (all share the bits above)."""
        shift = 255 - depth
        return bisect_left(self.ints, ((self.ints[lo] >> shift) | 1) << shift, lo, hi)


def _build(keys: Sequence[bytes], values: Sequence[bytes], depth: int) -> _Node:
    """The canonical subtree of entries sorted by key, all sharing their first ``depth`` bits."""
    if not keys:
        return None
    if len(keys) == 1:
        return _Leaf(keys[0], values[0])
    ints = [int.from_bytes(k, "big") for k in keys]
    return _build_run(keys, values, ints, 0, len(keys), depth)


def _build_run(keys: Sequence[bytes], values: Sequence[bytes], ints: list[int], lo: int, hi: int, depth: int) -> _Node:
    if hi - lo == 1:
        return _Leaf(keys[lo], values[lo])
    shift = 255 - depth
    cut = bisect_left(ints, ((ints[lo] >> shift) | 1) << shift, lo, hi)
    if cut in (lo, hi):  # all on one side: the parent is a branch with one empty child
        child = _build_run(keys, values, ints, lo, hi, depth + 1)
        return _Branch(None, child) if cut == lo else _Branch(child, None)
    return _Branch(
        _build_run(keys, values, ints, lo, cut, depth + 1), _build_run(keys, values, ints, cut, hi, depth + 1)
    )


def _rebuild(batch: _Batch, lo: int, hi: int, depth: int, leaf: _Leaf | None) -> _Node:
    """The subtree of ``leaf`` (if any) with the changes ``[lo, hi)`` applied."""
    keys, values = batch.keys, batch.values
    entries = {keys[i]: values[i] for i in range(lo, hi)}
    if leaf is not None:
        entries.setdefault(leaf.key, leaf.value_hash)
    present = sorted((k, v) for k, v in entries.items() if v is not None)
    batch.grown += len(present) - (leaf is not None)
    return _build([k for k, _ in present], [v for _, v in present], depth)


def _update(node: _Node, batch: _Batch, lo: int, hi: int, depth: int) -> _Node:
    if lo == hi:
        return node
    if node is None:
        return _rebuild(batch, lo, hi, depth, None)
    if type(node) is _Leaf:
        return _rebuild(batch, lo, hi, depth, node)
    assert type(node) is _Branch
    cut = batch.split(lo, hi, depth)
    left = _update(node.left, batch, lo, cut, depth + 1) if cut > lo else node.left
    right = _update(node.right, batch, cut, hi, depth + 1) if cut < hi else node.right
    if left is node.left and right is node.right:
        return node
    return _join(left, right)


@dataclass(frozen=True, slots=True)
class SmtProof:
    """Siblings from the root down; ``leaf_*`` is the leaf the path ends at (absent when empty)."""

    siblings: tuple[bytes, ...]
    leaf_key: bytes | None
    leaf_value_hash: bytes | None


class SparseMerkleTree:
    __slots__ = ("_root", "_size")

    def __init__(self, root: _Node = None, size: int = 0) -> None:
        self._root = root
        self._size = size

    @property
    def root_hash(self) -> bytes:
        return EMPTY_HASH if self._root is None else self._root.hash

    def __len__(self) -> int:
        return self._size

    def update(self, changes: Mapping[bytes, bytes | None]) -> SparseMerkleTree:
        """A new tree with ``key → value_hash`` set (``None`` deletes); self is untouched."""
        if any(len(key) != 32 for key in changes):
            raise ValueError("SMT keys must be 32 bytes")
        batch = _Batch(sorted(changes.items()))
        root = _update(self._root, batch, 0, len(batch.keys), 0)
        return SparseMerkleTree(root, self._size + batch.grown)

    def get(self, key: bytes) -> bytes | None:
        node = self._root
        depth = 0
        while isinstance(node, _Branch):
            node = node.right if get_key_bit(key, depth) else node.left
            depth += 1
        if isinstance(node, _Leaf) and node.key == key:
            return node.value_hash
        return None

    def prove(self, key: bytes) -> SmtProof:
        node = self._root
        siblings: list[bytes] = []
        depth = 0
        while isinstance(node, _Branch):
            if get_key_bit(key, depth):
                siblings.append(EMPTY_HASH if node.left is None else node.left.hash)
                node = node.right
            else:
                siblings.append(EMPTY_HASH if node.right is None else node.right.hash)
                node = node.left
            depth += 1
        if isinstance(node, _Leaf):
            return SmtProof(tuple(siblings), node.key, node.value_hash)
        return SmtProof(tuple(siblings), None, None)


def _shares_prefix(a: bytes, b: bytes, bits: int) -> bool:
    return all(get_key_bit(a, d) == get_key_bit(b, d) for d in range(bits))


def is_valid_smt_proof(root: bytes, key: bytes, value_hash: bytes | None, proof: SmtProof) -> bool:
    """Check that ``key`` maps to ``value_hash`` (or is absent when ``None``) under ``root``."""
    depth = len(proof.siblings)
    if depth > 256 or len(key) != 32:
        return False
    if value_hash is not None:
        if proof.leaf_key != key or proof.leaf_value_hash != value_hash:
            return False
        node = compute_leaf_hash(key, value_hash)
    elif proof.leaf_key is None:
        node = EMPTY_HASH
    else:
        # Absence shown by a different leaf sitting where ``key`` would be.
        if proof.leaf_value_hash is None or proof.leaf_key == key or not _shares_prefix(proof.leaf_key, key, depth):
            return False
        node = compute_leaf_hash(proof.leaf_key, proof.leaf_value_hash)
    for d in range(depth - 1, -1, -1):
        sibling = proof.siblings[d]
        node = compute_branch_hash(sibling, node) if get_key_bit(key, d) else compute_branch_hash(node, sibling)
    return node == root
