"""The bond index: its sorted list (``StakingState.bonds``) follows a block's writes without a full rebuild,
and always equals the list rebuilt from scratch."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from aitbc.chain.bonds import Bond, BondIndex

names = st.sampled_from([f"v{i}" for i in range(4)])
delegators = st.sampled_from([f"d{i:02d}" for i in range(30)])
writes = st.dictionaries(st.tuples(names, delegators), st.integers(0, 3), max_size=25)


def _rebuilt(amounts: dict[tuple[str, str], int]) -> list[Bond]:
    return [Bond(v, d, a) for (v, d), a in sorted(amounts.items()) if a]


@settings(max_examples=60, deadline=None)
@given(start=writes, blocks=st.lists(writes, max_size=6))
def test_the_sorted_list_follows_every_block_of_writes(
    start: dict[tuple[str, str], int], blocks: list[dict[tuple[str, str], int]]
) -> None:
    index = BondIndex(_rebuilt(start))
    model = {k: a for k, a in start.items() if a}
    index.to_list()  # built once; each block below updates it in place of a rebuild
    for block in blocks:
        before = index.to_list()
        frozen = list(before)
        index.apply(block)
        model.update(block)
        assert index.to_list() == _rebuilt(model) == list(index.iter_bonds())
        assert before == frozen, "a list handed out before must never change"
        assert index.get_total() == sum(model.values())


def test_a_direct_write_drops_the_list_and_the_next_call_rebuilds_it() -> None:
    index = BondIndex([Bond("v", "a", 2)])
    assert index.to_list() == [Bond("v", "a", 2)]
    index.set("v", "b", 1)
    assert index.to_list() == [Bond("v", "a", 2), Bond("v", "b", 1)]
    index.apply({("v", "a"): 0, ("w", "c"): 5})
    assert index.to_list() == [Bond("v", "b", 1), Bond("w", "c", 5)]
