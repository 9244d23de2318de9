"""A hypothesis strategy of byte strings near valid inputs: a seed with bytes flipped, inserted, cut or duplicated."""

from __future__ import annotations

from hypothesis import strategies as st


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "cut", "dup"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[at] = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFF]))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=9))
        elif op == "delete" and data:
            del data[at : at + draw(st.integers(1, 8))]
        elif op == "cut":
            del data[at:]
        elif op == "dup" and data:
            data[at:at] = data[at : at + draw(st.integers(1, 16))]
    return bytes(data)


def near(seeds: list[bytes], max_size: int = 2_000) -> st.SearchStrategy[bytes]:
    """Mostly mutated seeds, sometimes arbitrary bytes."""
    return st.one_of(mutated(seeds), mutated(seeds), st.binary(max_size=max_size))
