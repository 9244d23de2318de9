"""Binary Merkle trees over ordered leaves (RFC 6962 shape), used for a block's tx root.

Leaves and inner nodes hash with distinct prefixes (0x00 / 0x01) so an inner
node can never pass for a leaf. An odd node at any level is promoted as is
(RFC 6962's split at the largest power of two below n).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()


def hash_leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def hash_node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def _root_of_hashes(nodes: Sequence[bytes]) -> bytes:
    n = len(nodes)
    if n == 1:
        return nodes[0]
    k = _split(n)
    return hash_node(_root_of_hashes(nodes[:k]), _root_of_hashes(nodes[k:]))


def compute_merkle_root(leaves: Sequence[bytes]) -> bytes:
    if not leaves:
        return EMPTY_ROOT
    return _root_of_hashes([hash_leaf(leaf) for leaf in leaves])


def compute_merkle_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """Sibling hashes from the leaf up to the root."""
    if not 0 <= index < len(leaves):
        raise IndexError("leaf index out of range")
    nodes = [hash_leaf(leaf) for leaf in leaves]
    path: list[bytes] = []

    def walk(lo: int, hi: int) -> None:
        if hi - lo == 1:
            return
        k = _split(hi - lo)
        if index < lo + k:
            walk(lo, lo + k)
            path.append(_root_of_hashes(nodes[lo + k : hi]))
        else:
            walk(lo + k, hi)
            path.append(_root_of_hashes(nodes[lo : lo + k]))

    walk(0, len(nodes))
    return path


def is_valid_merkle_proof(root: bytes, leaf: bytes, index: int, count: int, path: Sequence[bytes]) -> bool:
    """True when ``leaf`` sits at ``index`` of a ``count``-leaf tree with this root."""
    if not 0 <= index < count:
        return False
    # Rebuild the left/right decisions top-down, then fold bottom-up.
    sides: list[bool] = []  # True: our node is the right child
    lo, hi = 0, count
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            sides.append(False)
            hi = lo + k
        else:
            sides.append(True)
            lo = lo + k
    if len(sides) != len(path):
        return False
    node = hash_leaf(leaf)
    for is_right, sibling in zip(reversed(sides), path, strict=True):
        node = hash_node(sibling, node) if is_right else hash_node(node, sibling)
    return node == root
