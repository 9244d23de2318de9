"""``random_bytes``: the OS's bytes, each handed out once, never repeated by a forked child."""

from __future__ import annotations


def test_random_bytes_are_never_handed_out_twice_across_blocks() -> None:
    from aitbc.runtime.entropy import RANDOM_BLOCK, random_bytes

    drawn = [random_bytes(10) for _ in range(3 * RANDOM_BLOCK // 10)]  # several blocks
    assert all(len(d) == 10 for d in drawn)
    assert len(set(drawn)) == len(drawn)
    assert len(random_bytes(RANDOM_BLOCK)) == RANDOM_BLOCK  # larger than a slice: straight from the OS
    assert random_bytes(0) == b""


def test_a_forked_child_does_not_repeat_its_parents_random_bytes() -> None:
    import os

    from aitbc.runtime.entropy import random_bytes

    random_bytes(10)  # the parent has a block in hand
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next bytes, to the parent
        os.write(write, random_bytes(16))
        os._exit(0)
    os.close(write)
    child = os.read(read, 16)
    os.waitpid(pid, 0)
    assert len(child) == 16 and child != random_bytes(16)
