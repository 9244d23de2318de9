"""Random bytes for ids, nonces and leases, drawn so that a call holds the GIL."""

from __future__ import annotations

import os
import threading
from typing import Final

RANDOM_BLOCK: Final = 4096


class _RandomBytes:
    """Random bytes from the OS's generator, drawn a block at a time and each handed out once.

    ``os.urandom`` releases the GIL for every call (a ``getrandom`` system call), so on a busy event loop
    each new id cost a wait to take the GIL back behind the other threads (up to the 5 ms switch interval):
    a loop-stall sampler in the coordinator at 600 jobs/s found submissions stalled in ``os.urandom`` for job
    and deposit-job ids. Taking slices of a 4 KiB block holds the GIL; the bytes are the kernel's all the same.
    A forked child starts with an empty block, so it never repeats its parent's bytes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._block = b""
        self._used = 0
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._block, self._used = b"", 0

    def take(self, n: int) -> bytes:
        if n > RANDOM_BLOCK // 4:
            return os.urandom(n)
        with self._lock:
            if self._used + n > len(self._block):
                self._block, self._used = os.urandom(RANDOM_BLOCK), 0
            start = self._used
            self._used = start + n
            return self._block[start : start + n]


_RANDOM = _RandomBytes()


def random_bytes(n: int) -> bytes:
    """``n`` random bytes for ids, nonces and leases (not for keys: those use ``os.urandom`` directly)."""
    return _RANDOM.take(n)
