"""Binary Merkle tree over ordered leaves (the block tx root)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aitbc.protocol.merkle import (
    EMPTY_ROOT,
    compute_merkle_proof,
    compute_merkle_root,
    hash_leaf,
    hash_node,
    is_valid_merkle_proof,
)

SIZES = range(1, 34)


def _leaves(n: int, salt: bytes = b"") -> list[bytes]:
    return [salt + i.to_bytes(4, "big") for i in range(n)]


def _flip(data: bytes) -> bytes:
    return bytes([data[0] ^ 1]) + data[1:]


def test_empty_and_single_leaf_roots() -> None:
    assert compute_merkle_root([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert compute_merkle_root([b"a"]) == hashlib.sha256(b"\x00a").digest()


def test_small_trees_have_the_rfc6962_shape() -> None:
    a, b, c = hash_leaf(b"a"), hash_leaf(b"b"), hash_leaf(b"c")
    assert compute_merkle_root([b"a", b"b"]) == hash_node(a, b)
    # an odd node is promoted: three leaves split 2 | 1
    assert compute_merkle_root([b"a", b"b", b"c"]) == hash_node(hash_node(a, b), c)
    assert hash_node(a, b) == hashlib.sha256(b"\x01" + a + b).digest()


def test_leaf_and_node_hashes_are_domain_separated() -> None:
    a, b = hash_leaf(b"a"), hash_leaf(b"b")
    # an inner node's preimage presented as a leaf does not give the same hash
    assert hash_leaf(a + b) != hash_node(a, b)
    assert compute_merkle_root([a + b]) != compute_merkle_root([b"a", b"b"])


def test_root_depends_on_order_and_content() -> None:
    leaves = _leaves(5)
    assert compute_merkle_root(leaves) != compute_merkle_root(list(reversed(leaves)))
    assert compute_merkle_root(leaves) != compute_merkle_root([*leaves[:-1], b"x"])
    assert compute_merkle_root(leaves) != compute_merkle_root(leaves[:-1])
    # duplicating the last leaf (the Bitcoin CVE-2012-2459 shape) changes the root
    assert compute_merkle_root(_leaves(3)) != compute_merkle_root([*_leaves(3), _leaves(3)[-1]])


@pytest.mark.parametrize("size", SIZES)
def test_proof_verifies_for_every_index(size: int) -> None:
    leaves = _leaves(size)
    root = compute_merkle_root(leaves)
    for index, leaf in enumerate(leaves):
        proof = compute_merkle_proof(leaves, index)
        assert is_valid_merkle_proof(root, leaf, index, size, proof), (size, index)


@pytest.mark.parametrize("size", SIZES)
def test_tampered_proofs_fail(size: int) -> None:
    leaves = _leaves(size)
    root = compute_merkle_root(leaves)
    for index, leaf in enumerate(leaves):
        proof = compute_merkle_proof(leaves, index)
        # tampered leaf
        assert not is_valid_merkle_proof(root, leaf + b"x", index, size, proof)
        # tampered root
        assert not is_valid_merkle_proof(_flip(root), leaf, index, size, proof)
        # every tampered sibling
        for k in range(len(proof)):
            bad = [*proof[:k], _flip(proof[k]), *proof[k + 1 :]]
            assert not is_valid_merkle_proof(root, leaf, index, size, bad)
        # a sibling missing or one too many
        if proof:
            assert not is_valid_merkle_proof(root, leaf, index, size, proof[:-1])
        assert not is_valid_merkle_proof(root, leaf, index, size, [*proof, bytes(32)])
        # the leaf claimed at another index
        if size > 1:
            other = (index + 1) % size
            assert not is_valid_merkle_proof(root, leaf, other, size, proof)
        # out-of-range index
        assert not is_valid_merkle_proof(root, leaf, size, size, proof)
        assert not is_valid_merkle_proof(root, leaf, -1, size, proof)


@pytest.mark.parametrize("size", [2, 3, 5, 8, 13])
def test_proof_does_not_verify_against_another_tree(size: int) -> None:
    leaves = _leaves(size)
    other_root = compute_merkle_root(_leaves(size, salt=b"o"))
    for index, leaf in enumerate(leaves):
        assert not is_valid_merkle_proof(other_root, leaf, index, size, compute_merkle_proof(leaves, index))


def test_proof_index_out_of_range() -> None:
    with pytest.raises(IndexError):
        compute_merkle_proof(_leaves(3), 3)
    with pytest.raises(IndexError):
        compute_merkle_proof([], 0)


@settings(max_examples=60)
@given(leaves=st.lists(st.binary(max_size=40), min_size=1, max_size=40), data=st.data())
def test_proofs_for_arbitrary_leaves(leaves: list[bytes], data: st.DataObject) -> None:
    root = compute_merkle_root(leaves)
    index = data.draw(st.integers(0, len(leaves) - 1))
    proof = compute_merkle_proof(leaves, index)
    assert is_valid_merkle_proof(root, leaves[index], index, len(leaves), proof)
    assert not is_valid_merkle_proof(root, leaves[index] + b"\x00", index, len(leaves), proof)
