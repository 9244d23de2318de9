"""The compact sparse Merkle tree behind the state root: canonical shape and proofs."""

from __future__ import annotations

import hashlib
import random
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aitbc.chain.smt import (
    EMPTY_HASH,
    SmtProof,
    SparseMerkleTree,
    compute_branch_hash,
    compute_leaf_hash,
    get_key_bit,
    is_valid_smt_proof,
)

keys_ = st.one_of(
    st.binary(min_size=32, max_size=32),
    # keys that share long prefixes, so paths run deep (down to bit 255)
    st.integers(0, 255).map(lambda i: bytes(31) + bytes([i])),
    st.integers(0, 255).map(lambda i: bytes([i]) + bytes(31)),
)
values = st.binary(min_size=32, max_size=32)
entries = st.dictionaries(keys_, values, max_size=40)


def _key(i: int) -> bytes:
    return hashlib.sha256(i.to_bytes(4, "big")).digest()


def _val(i: int) -> bytes:
    return hashlib.sha256(b"v" + i.to_bytes(4, "big")).digest()


def _flip(data: bytes, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 0x80 >> (bit % 8)
    return bytes(out)


def _reference_root(items: dict[bytes, bytes], depth: int = 0) -> bytes:
    """The canonical root straight from its definition (a slow, obviously correct model)."""
    if not items:
        return EMPTY_HASH
    if len(items) == 1:
        ((key, value),) = items.items()
        return compute_leaf_hash(key, value)
    left = {k: v for k, v in items.items() if not get_key_bit(k, depth)}
    right = {k: v for k, v in items.items() if get_key_bit(k, depth)}
    return compute_branch_hash(_reference_root(left, depth + 1), _reference_root(right, depth + 1))


# -- shape ---------------------------------------------------------------------------


def test_empty_tree() -> None:
    tree = SparseMerkleTree()
    assert tree.root_hash == EMPTY_HASH == bytes(32)
    assert len(tree) == 0
    assert tree.get(_key(0)) is None


def test_single_entry_root_is_its_leaf() -> None:
    tree = SparseMerkleTree().update({_key(1): _val(1)})
    assert tree.root_hash == compute_leaf_hash(_key(1), _val(1)) == hashlib.sha256(b"\x00" + _key(1) + _val(1)).digest()


def test_two_entries_split_on_the_first_differing_bit() -> None:
    a = bytes(32)
    b = bytes([0x80]) + bytes(31)  # differs at bit 0
    c = bytes([0x20]) + bytes(31)  # shares bits 0 and 1 with a, differs at bit 2
    tree = SparseMerkleTree().update({a: _val(1), b: _val(2)})
    assert tree.root_hash == compute_branch_hash(compute_leaf_hash(a, _val(1)), compute_leaf_hash(b, _val(2)))
    tree = SparseMerkleTree().update({a: _val(1), c: _val(3)})
    la, lc = compute_leaf_hash(a, _val(1)), compute_leaf_hash(c, _val(3))
    expected = compute_branch_hash(compute_branch_hash(compute_branch_hash(la, lc), EMPTY_HASH), EMPTY_HASH)
    assert tree.root_hash == expected
    assert compute_branch_hash(la, lc) == hashlib.sha256(b"\x01" + la + lc).digest()


@settings(max_examples=50, deadline=None)
@given(items=entries)
def test_root_matches_the_reference_model(items: dict[bytes, bytes]) -> None:
    tree = SparseMerkleTree().update(items)
    assert tree.root_hash == _reference_root(items)
    assert len(tree) == len(items)
    for key, value in items.items():
        assert tree.get(key) == value


def test_a_seeded_history_of_batches_keeps_the_roots_it_always_had() -> None:
    """60 batches of inserts, overwrites and deletes (some keys sharing 31 bytes): after each batch the root and
    size match the reference model, and the digest of all 60 roots is the one the tree gave before its update
    path was rewritten (batched bisection over integer keys): a change of the hashing path that moved any state
    root would fail here."""
    rng = random.Random(13)
    tree, model, roots = SparseMerkleTree(), dict[bytes, bytes](), hashlib.sha256()
    for _ in range(60):
        changes: dict[bytes, bytes | None] = {}
        for _ in range(rng.randrange(1, 300)):
            live, r = sorted(model), rng.random()
            if live and r < 0.3:
                changes[rng.choice(live)] = None
            elif live and r < 0.6:
                changes[rng.choice(live)] = hashlib.sha256(rng.randbytes(8)).digest()
            else:
                near = rng.random() >= 0.9
                key = bytes(31) + bytes([rng.randrange(256)]) if near else hashlib.sha256(rng.randbytes(8)).digest()
                changes[key] = hashlib.sha256(rng.randbytes(8)).digest()
        tree = tree.update(changes)
        for key, value in changes.items():
            if value is None:
                model.pop(key, None)
            else:
                model[key] = value
        assert len(tree) == len(model)
        assert tree.root_hash == _reference_root(model)
        roots.update(tree.root_hash)
    assert roots.hexdigest() == "4a22df562bee0f128d085d30af3b6390a429a002039284e8a6a3bf3a95cccf6c"


@settings(max_examples=40, deadline=None)
@given(items=entries, data=st.data())
def test_root_does_not_depend_on_insertion_order_or_batching(items: dict[bytes, bytes], data: st.DataObject) -> None:
    single = SparseMerkleTree().update(items)
    order = data.draw(st.permutations(sorted(items)), label="order")
    # one key per update, in a random order
    tree = SparseMerkleTree()
    for key in order:
        tree = tree.update({key: items[key]})
    assert tree.root_hash == single.root_hash
    assert len(tree) == len(items)
    # random batches, in a random order
    cuts = sorted(data.draw(st.lists(st.integers(0, len(order)), max_size=5), label="cuts"))
    tree = SparseMerkleTree()
    for lo, hi in zip([0, *cuts], [*cuts, len(order)], strict=True):
        tree = tree.update({k: items[k] for k in order[lo:hi]})
    assert tree.root_hash == single.root_hash
    assert len(tree) == len(items)


@settings(max_examples=40, deadline=None)
@given(first=entries, second=entries, data=st.data())
def test_overwrites_and_deletes_give_the_canonical_root(
    first: dict[bytes, bytes], second: dict[bytes, bytes], data: st.DataObject
) -> None:
    tree = SparseMerkleTree().update(first)
    # overwrite some existing keys, add new ones, delete some
    overwrite = {k: _flip(v) for k, v in first.items() if data.draw(st.booleans())}
    delete = {k: None for k in first if k not in overwrite and data.draw(st.booleans())}
    changes: dict[bytes, bytes | None] = {**second, **overwrite, **delete}
    tree = tree.update(changes)
    expected = dict(first)
    for key, value in changes.items():
        if value is None:
            expected.pop(key, None)
        else:
            expected[key] = value
    assert tree.root_hash == SparseMerkleTree().update(expected).root_hash == _reference_root(expected)
    assert len(tree) == len(expected)


@settings(max_examples=40, deadline=None)
@given(items=entries, data=st.data())
def test_deleting_everything_gives_the_empty_hash(items: dict[bytes, bytes], data: st.DataObject) -> None:
    tree = SparseMerkleTree().update(items)
    order = data.draw(st.permutations(sorted(items)))
    half = len(order) // 2
    tree = tree.update(dict.fromkeys(order[:half]))
    assert tree.root_hash == SparseMerkleTree().update({k: items[k] for k in order[half:]}).root_hash
    for key in order[half:]:
        tree = tree.update({key: None})
    assert tree.root_hash == EMPTY_HASH
    assert len(tree) == 0


def test_deleting_an_absent_key_changes_nothing() -> None:
    tree = SparseMerkleTree().update({_key(i): _val(i) for i in range(5)})
    after = tree.update({_key(99): None})
    assert after.root_hash == tree.root_hash
    assert len(after) == 5
    assert SparseMerkleTree().update({_key(1): None}).root_hash == EMPTY_HASH


def test_update_is_persistent() -> None:
    old = SparseMerkleTree().update({_key(i): _val(i) for i in range(10)})
    old_root = old.root_hash
    new = old.update({_key(3): None, _key(50): _val(50), _key(4): _val(40)})
    assert old.root_hash == old_root
    assert old.get(_key(3)) == _val(3)
    assert new.get(_key(3)) is None
    assert new.get(_key(4)) == _val(40)
    assert old.get(_key(50)) is None


@pytest.mark.parametrize("length", [0, 31, 33])
def test_keys_must_be_32_bytes(length: int) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        SparseMerkleTree().update({bytes(length): _val(0)})


def test_the_value_changes_the_root() -> None:
    a = SparseMerkleTree().update({_key(i): _val(i) for i in range(5)})
    b = a.update({_key(2): _flip(_val(2))})
    assert a.root_hash != b.root_hash


# -- proofs --------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(items=entries.filter(bool), absent=st.lists(keys_, max_size=5))
def test_proofs_verify_for_present_and_absent_keys(items: dict[bytes, bytes], absent: list[bytes]) -> None:
    tree = SparseMerkleTree().update(items)
    root = tree.root_hash
    for key, value in items.items():
        proof = tree.prove(key)
        assert is_valid_smt_proof(root, key, value, proof)
        # ... and not for anything else
        assert not is_valid_smt_proof(root, key, None, proof)
        assert not is_valid_smt_proof(root, key, _flip(value), proof)
    for key in absent:
        if key in items:
            continue
        proof = tree.prove(key)
        assert is_valid_smt_proof(root, key, None, proof)
        assert not is_valid_smt_proof(root, key, _val(0), proof)


def test_proofs_on_the_empty_tree() -> None:
    tree = SparseMerkleTree()
    proof = tree.prove(_key(1))
    assert proof == SmtProof((), None, None)
    assert is_valid_smt_proof(EMPTY_HASH, _key(1), None, proof)
    assert not is_valid_smt_proof(EMPTY_HASH, _key(1), _val(1), proof)


def _tampered_proofs(proof: SmtProof) -> list[SmtProof]:
    out = []
    # every non-empty sibling, and the empty ones at both ends of the path (deep paths are mostly empty)
    depth = len(proof.siblings)
    positions = {i for i, sibling in enumerate(proof.siblings) if sibling != EMPTY_HASH} | (
        {0, depth - 1} if depth else set()
    )
    for i in sorted(positions):
        siblings = list(proof.siblings)
        siblings[i] = _flip(siblings[i], 255)
        out.append(replace(proof, siblings=tuple(siblings)))
    if proof.siblings:
        out.append(replace(proof, siblings=proof.siblings[:-1]))
        out.append(replace(proof, siblings=proof.siblings[1:]))
    out.append(replace(proof, siblings=(*proof.siblings, EMPTY_HASH)))
    if proof.leaf_value_hash is not None:
        out.append(replace(proof, leaf_value_hash=_flip(proof.leaf_value_hash)))
    if proof.leaf_key is not None:
        out.append(replace(proof, leaf_key=_flip(proof.leaf_key, 255)))
    return out


@settings(max_examples=40, deadline=None)
@given(items=st.dictionaries(keys_, values, min_size=1, max_size=24), absent=keys_)
def test_tampered_proofs_fail(items: dict[bytes, bytes], absent: bytes) -> None:
    tree = SparseMerkleTree().update(items)
    root = tree.root_hash
    wrong_root = _flip(root, 7)
    for key, value in items.items():
        proof = tree.prove(key)
        for bad in _tampered_proofs(proof):
            assert not is_valid_smt_proof(root, key, value, bad)
        # a wrong key with the right value and proof
        assert not is_valid_smt_proof(root, _flip(key, 255), value, proof)
        assert not is_valid_smt_proof(root, absent, value, proof) or absent == key
        # a wrong root
        assert not is_valid_smt_proof(wrong_root, key, value, proof)
    if absent not in items:
        proof = tree.prove(absent)
        assert is_valid_smt_proof(root, absent, None, proof)
        assert not is_valid_smt_proof(wrong_root, absent, None, proof)
        for bad in _tampered_proofs(proof):
            assert not is_valid_smt_proof(root, absent, None, bad)


def test_absence_proof_cannot_be_made_from_a_present_leaf() -> None:
    items = {_key(i): _val(i) for i in range(8)}
    tree = SparseMerkleTree().update(items)
    for key in items:
        proof = tree.prove(key)
        # the proof ends at key's own leaf: it shows presence, never absence
        assert proof.leaf_key == key
        assert not is_valid_smt_proof(tree.root_hash, key, None, proof)
        # a proof for another key does not show this one absent
        other = tree.prove(_key((list(items).index(key) + 1) % 8))
        assert not is_valid_smt_proof(tree.root_hash, key, None, other)


def test_absence_proof_with_a_leaf_outside_the_path_fails() -> None:
    items = {_key(i): _val(i) for i in range(16)}
    tree = SparseMerkleTree().update(items)
    absent = _key(1000)
    proof = tree.prove(absent)
    assert is_valid_smt_proof(tree.root_hash, absent, None, proof)
    # claiming the path ended in an empty subtree instead of the leaf that is there fails
    if proof.leaf_key is not None:
        assert not is_valid_smt_proof(tree.root_hash, absent, None, replace(proof, leaf_key=None, leaf_value_hash=None))


def _fold(key: bytes, node: bytes, siblings: tuple[bytes, ...]) -> bytes:
    """The root a proof claims: fold from the bottom along ``key``'s path bits."""
    for depth in range(len(siblings) - 1, -1, -1):
        sibling = siblings[depth]
        node = compute_branch_hash(sibling, node) if get_key_bit(key, depth) else compute_branch_hash(node, sibling)
    return node


def test_absence_needs_a_leaf_on_the_keys_own_path() -> None:
    """The verifier itself refuses an absence proof ending at a leaf off ``key``'s path, whatever the root."""
    key = bytes(32)  # path 0000…
    off_path = bytes([0x40]) + bytes(31)  # differs from key at bit 1
    on_path = bytes([0x10]) + bytes(31)  # shares bits 0..2 with key
    siblings = (_val(1), _val(2), _val(3))
    for leaf_key, expected in ((on_path, True), (off_path, False)):
        proof = SmtProof(siblings, leaf_key, _val(9))
        root = _fold(key, compute_leaf_hash(leaf_key, _val(9)), siblings)
        assert is_valid_smt_proof(root, key, None, proof) is expected


def test_malformed_proofs_are_refused_not_crashed() -> None:
    tree = SparseMerkleTree().update({_key(1): _val(1)})
    assert not is_valid_smt_proof(tree.root_hash, b"short", _val(1), tree.prove(_key(1)))
    too_deep = SmtProof(tuple([EMPTY_HASH] * 257), _key(1), _val(1))
    assert not is_valid_smt_proof(tree.root_hash, _key(1), _val(1), too_deep)
    absence_without_value = SmtProof((), _key(2), None)
    assert not is_valid_smt_proof(tree.root_hash, _key(1), None, absence_without_value)
