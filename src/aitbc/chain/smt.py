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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

EMPTY_HASH: Final = bytes(32)


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
        self.hash = compute_leaf_hash(key, value_hash)


class _Branch:
    __slots__ = ("hash", "left", "right")
    left: _Node
    right: _Node
    hash: bytes

    def __init__(self, left: _Node, right: _Node) -> None:
        self.left = left
        self.right = right
        self.hash = compute_branch_hash(
            EMPTY_HASH if left is None else left.hash, EMPTY_HASH if right is None else right.hash
        )


_Node = _Leaf | _Branch | None


def _join(left: _Node, right: _Node) -> _Node:
    """Canonical parent of two subtrees: one-entry subtrees collapse into their leaf."""
    if left is None and (right is None or isinstance(right, _Leaf)):
        return right
    if right is None and isinstance(left, _Leaf):
        return left
    return _Branch(left, right)


def _split_at(items: Sequence[tuple[bytes, bytes | None]], depth: int) -> int:
    """Index of the first item whose key has bit 1 at ``depth`` (items sorted by key)."""
    lo, hi = 0, len(items)
    while lo < hi:
        mid = (lo + hi) // 2
        if get_key_bit(items[mid][0], depth):
            hi = mid
        else:
            lo = mid + 1
    return lo


def _build(items: Sequence[tuple[bytes, bytes | None]], depth: int) -> _Node:
    if not items:
        return None
    if len(items) == 1:
        key, value_hash = items[0]
        return None if value_hash is None else _Leaf(key, value_hash)
    cut = _split_at(items, depth)
    return _join(_build(items[:cut], depth + 1), _build(items[cut:], depth + 1))


def _update(node: _Node, items: Sequence[tuple[bytes, bytes | None]], depth: int) -> _Node:
    if not items:
        return node
    if node is None:
        return _build([i for i in items if i[1] is not None], depth)
    if isinstance(node, _Leaf):
        if any(key == node.key for key, _ in items):
            merged = list(items)
        else:
            merged = sorted([*items, (node.key, node.value_hash)])
        return _build([i for i in merged if i[1] is not None], depth)
    cut = _split_at(items, depth)
    return _join(_update(node.left, items[:cut], depth + 1), _update(node.right, items[cut:], depth + 1))


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
        items = sorted(changes.items())
        for key, _ in items:
            if len(key) != 32:
                raise ValueError("SMT keys must be 32 bytes")
        size = self._size + sum((v is not None) - (self.get(k) is not None) for k, v in items)
        return SparseMerkleTree(_update(self._root, items, 0), size)

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
