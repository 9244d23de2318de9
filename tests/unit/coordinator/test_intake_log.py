"""The intake log: records read back whole and in order, a torn tail never read as a job, segments deleted
only once everything in them is stored."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aitbc.coordinator.db import intake_log
from aitbc.coordinator.db.intake_log import HEADER, IntakeLog, read_records


def on_disk(directory: Path) -> list[bytes]:
    """What a restart would read."""
    return IntakeLog(directory).read_all()


def test_records_come_back_in_order_after_a_restart(tmp_path: Path) -> None:
    log = IntakeLog(tmp_path)
    payloads = [f"job {i}".encode() * (i + 1) for i in range(50)]
    for payload in payloads:
        log.append(payload)
    # no close, as after kill -9: the mapping's pages are the file's
    assert on_disk(tmp_path) == payloads


def test_a_torn_or_corrupt_tail_is_not_read(tmp_path: Path) -> None:
    log = IntakeLog(tmp_path)
    log.append(b"first")
    log.append(b"second")
    log.close()
    (segment,) = tmp_path.glob("intake-*.log")
    data = bytearray(segment.read_bytes())
    second = HEADER.size + len(b"first") + HEADER.size
    data[second] ^= 0xFF  # one flipped byte in the second record's payload
    assert list(read_records(bytes(data))) == [b"first"]
    # a header that claims more than the segment holds
    cut = bytearray(HEADER.pack(1 << 20, zlib.crc32(b"x"))) + b"x"
    assert list(read_records(b"".join([HEADER.pack(3, zlib.crc32(b"abc")), b"abc", bytes(cut)]))) == [b"abc"]
    assert list(read_records(b"")) == []


def test_recovered_segments_are_deleted_and_numbering_goes_on(tmp_path: Path) -> None:
    first = IntakeLog(tmp_path)
    number, _ = first.append(b"a")
    first.close()
    second = IntakeLog(tmp_path)
    assert second.read_all() == [b"a"]
    second.discard_read()
    assert list(tmp_path.glob("intake-*.log")) == []
    later, _ = second.append(b"b")
    assert later > number
    assert on_disk(tmp_path) == [b"b"]


def test_a_record_larger_than_a_segment_gets_its_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(intake_log, "SEGMENT_BYTES", 4096)
    log = IntakeLog(tmp_path)
    big = bytes(range(256)) * 64  # 16 KiB
    log.append(b"small")
    log.append(big)
    log.append(b"after")
    assert on_disk(tmp_path) == [b"small", big, b"after"]
    sizes = sorted(p.stat().st_size for p in tmp_path.glob("intake-*.log"))
    assert sizes == [4096, 20480]  # the big record's segment: its size rounded up to whole pages


def test_a_stale_segment_is_replaced_once_stored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = IntakeLog(tmp_path)
    number, _ = log.append(b"old")
    monkeypatch.setattr(intake_log, "SEGMENT_MAX_AGE_S", 0.0)
    finished = log.stored(number)
    assert finished is not None  # everything in it stored, and too old to keep writing to
    finished.remove()
    assert on_disk(tmp_path) == []
    log.append(b"new")
    assert on_disk(tmp_path) == [b"new"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=st.lists(
        st.one_of(st.tuples(st.just("append"), st.integers(1, 3000)), st.tuples(st.just("store"), st.integers(0, 50))),
        max_size=80,
    )
)
def test_what_is_not_stored_stays_on_disk_and_nothing_else_piles_up(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, int]]
) -> None:
    """After any mix of appends and stores: every record not yet stored is read back by a restart, and the
    files on disk are at most the segments still holding unstored records plus the one being written."""
    directory = tmp_path_factory.mktemp("intake")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(intake_log, "SEGMENT_BYTES", 8192)
        patch.setattr(intake_log, "SEGMENT_ROTATE_BYTES", 4096)
        log = IntakeLog(directory)
        unstored: list[tuple[int, bytes]] = []
        for i, (op, value) in enumerate(steps):
            if op == "append":
                payload = i.to_bytes(4, "big") * (value // 4 + 1)
                number, finished = log.append(payload)
                unstored.append((number, payload))
            elif unstored:
                number, _ = unstored.pop(value % len(unstored))
                finished = log.stored(number)
            else:
                continue
            if finished is not None:
                finished.remove()
            found = on_disk(directory)
            assert all(payload in found for _, payload in unstored)
            holding = {number for number, _ in unstored}
            assert len(list(directory.glob("intake-*.log"))) <= len(holding) + 1
            assert log.unstored == len(unstored)
        log.close()
