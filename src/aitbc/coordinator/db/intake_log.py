"""The intake log: a new job is durable once its record is here, before its row is in the database.

Why: ``POST /api/v1/jobs`` answered once the transaction holding its row committed. That commit runs on
the writer thread, behind whatever write is running (a miner's batch of results, claims, chain events),
and every hand-over of the GIL between the event loop and that thread can wait out the interpreter's
switch interval. At 600 submissions/s on 2 cores a submission waited 4 ms for its insert at the median
and 20-45 ms at p99 (``bench/settlement.py``); answering once the record is in this log instead brought
the server-side p99 to 6-8 ms in the same runs.

How, and what it promises:

- Records are appended to a memory-mapped segment file (``intake-<n>.log``) on the event loop itself: a
  copy into a shared mapping, no system call, the GIL held throughout. The pages are the kernel's page
  cache, so a record survives the coordinator being killed (``-9``) the moment ``append`` returns — the
  same promise as a commit of the database in WAL mode with ``synchronous=NORMAL`` (the coordinator's
  SQLite settings): a process crash loses nothing; a crash of the whole machine may lose the last
  moments, in both.
- A record is ``<length u32><crc32 u32><payload>``; the rest of a segment is zeros. Reading stops at the
  first zero length or the first record whose checksum does not match, so a torn tail is never taken for
  a job.
- ``DbWriter`` inserts each logged job by group commit as before and reports it here (``stored``). A
  segment whose records are all stored is deleted once it is full, or once it is older than
  ``SEGMENT_MAX_AGE_S`` or bigger than ``SEGMENT_ROTATE_BYTES`` (a quiet moment is enough): what lies on disk is
  only recent or not yet stored.
- At start, before anything reads the database, ``read_all`` gives every record still on disk; the caller
  inserts the jobs whose rows are missing (replaying twice inserts nothing twice) and then calls
  ``discard_read``.

Only the coordinator's event loop calls ``append`` and ``stored``; deleting a segment may be handed to another
thread (``remove``), after which nothing touches it.
"""

from __future__ import annotations

import errno
import mmap
import os
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Final

HEADER: Final = struct.Struct("<II")
"""A record's header: payload length, CRC-32 of the payload."""
SEGMENT_BYTES: Final = 8 * 1024 * 1024
"""A segment's size (a larger record gets a segment of its own size)."""
SEGMENT_ROTATE_BYTES: Final = 1024 * 1024
"""A segment that holds this much and has nothing left to store is deleted and a new one begun."""
SEGMENT_MAX_AGE_S: Final = 60.0
"""Likewise for a segment this old: records stay on disk only while they are recent or not yet stored."""
_PAGE: Final = mmap.PAGESIZE


class Segment:
    """One segment file, mapped: where the next record goes and how many of its records are not yet stored."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            _allocate(fd, size)
            self.map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self.size = size
        self.position = 0
        self.unstored = 0
        self.sealed = False
        self.created = time.monotonic()

    def fits(self, length: int) -> bool:
        return self.position + HEADER.size + length <= self.size

    def write(self, payload: bytes) -> None:
        end = self.position + HEADER.size + len(payload)
        self.map[self.position + HEADER.size : end] = payload
        # the header last: a record whose header is there has its payload there too
        self.map[self.position : self.position + HEADER.size] = HEADER.pack(len(payload), zlib.crc32(payload))
        self.position = end
        self.unstored += 1

    def remove(self) -> None:
        self.map.close()
        self.path.unlink(missing_ok=True)


def _allocate(fd: int, size: int) -> None:
    """Give the file its blocks now: a full disk is then an ``OSError`` here, not a SIGBUS on a later write
    into the mapping (which a sparse file would risk)."""
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
            raise
        os.ftruncate(fd, size)  # a file system without fallocate


def read_records(data: bytes) -> Iterator[bytes]:
    """The whole records of one segment's bytes, in order, up to its end or its first torn record."""
    position = 0
    while position + HEADER.size <= len(data):
        length, crc = HEADER.unpack_from(data, position)
        start = position + HEADER.size
        if length == 0 or start + length > len(data):
            return
        payload = data[start : start + length]
        if zlib.crc32(payload) != crc:
            return
        yield payload
        position = start + length


class IntakeLog:
    """Appends new jobs' records; forgets them once they are stored (see the module docstring)."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.directory = directory
        self._found = sorted(directory.glob("intake-*.log"))
        self._next = 1 + max((int(p.stem.split("-")[1]) for p in self._found), default=0)
        self._current: Segment | None = None
        self._segments: dict[int, Segment] = {}

    # -- start -------------------------------------------------------------------------------------------
    def read_all(self) -> list[bytes]:
        """Every record left on disk by an earlier run, oldest first."""
        return [record for path in self._found for record in read_records(path.read_bytes())]

    def discard_read(self) -> None:
        """The records ``read_all`` gave are all in the database now: delete their segments."""
        for path in self._found:
            path.unlink(missing_ok=True)
        self._found = []

    # -- running (on the event loop) -----------------------------------------------------------------------
    def append(self, payload: bytes) -> tuple[int, Segment | None]:
        """Log one record; returns its segment's number, for ``stored``, and a segment to ``remove`` (a
        finished one this append replaced) or None."""
        retired = None
        current = self._current
        if current is not None and (not current.fits(len(payload)) or self._stale(current)):
            retired = self._seal(current)
            current = None
        if current is None:
            size = max(SEGMENT_BYTES, -(-(HEADER.size + len(payload)) // _PAGE) * _PAGE)
            number = self._next
            self._next += 1
            current = Segment(self.directory / f"intake-{number:012d}.log", size)
            self._segments[number] = current
            self._current = current
        current.write(payload)
        return self._next - 1, retired

    def stored(self, number: int) -> Segment | None:
        """One record of segment ``number`` is in the database; returns the segment when it can be removed."""
        segment = self._segments.get(number)
        if segment is None:
            return None
        segment.unstored -= 1
        if segment.unstored > 0:
            return None
        if segment.sealed:
            del self._segments[number]
            return segment
        if segment.position >= SEGMENT_ROTATE_BYTES or self._stale(segment):
            return self._seal(segment)
        return None

    def _stale(self, segment: Segment) -> bool:
        return time.monotonic() - segment.created >= SEGMENT_MAX_AGE_S

    def _seal(self, segment: Segment) -> Segment | None:
        """No more records go to ``segment``; returns it when nothing in it waits to be stored."""
        segment.sealed = True
        if self._current is segment:
            self._current = None
        if segment.unstored > 0:
            return None
        for number, found in list(self._segments.items()):
            if found is segment:
                del self._segments[number]
        return segment

    @property
    def unstored(self) -> int:
        return sum(s.unstored for s in self._segments.values())

    def close(self) -> None:
        """Unmap the segments; they stay on disk (the next start finds the stored jobs already there)."""
        for segment in self._segments.values():
            segment.map.close()
        self._segments = {}
        self._current = None
