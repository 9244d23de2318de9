"""Bulk Ed25519 checks for tx admission, on worker processes.

Why processes and not threads: libsodium releases the GIL, but a verify
thread has to take the GIL back after every signature (~70 µs of C) and
competes for it with the event loop, which parses, admits and answers the
same batches. Measured on 2 cores, two verify threads checked txs at about
the speed of one (the GIL hand-offs, not the crypto, set the pace), and less
while the event loop was busy. A worker process shares no GIL: the event
loop prepares each tx (encoding, hash: a few µs) and ships plain bytes; the
workers only run ``crypto_sign_open``.

The workers are plain ``python -m aitbc.node.sigworker`` processes talking
over pipes (``aitbc.node.sigworker`` has the framing): no pickling, and
nothing of the parent (its ``__main__``, its event loop) is imported or
inherited. Requests are pipelined: each chunk of a batch is written to the
least-loaded worker at once and its answer read back, in order, by a thread
that waits on the pipe with the GIL released. So a worker always has its
next chunk queued and never idles while the event loop is busy.

Small batches (a single ``send_tx``) are checked inline: a round trip to a
worker costs more than a few signatures. If a worker dies, its outstanding
chunks are checked in the waiting threads instead and it is replaced, so a
check never fails for infrastructure reasons.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Final

from aitbc.node.sigworker import encode_request
from aitbc.protocol.crypto import SignatureCheck, check_signatures

log = logging.getLogger("aitbc.node.verify")

INLINE_MAX: Final = 64
"""Batches up to this many signatures are checked on the calling thread."""
CHUNK: Final = 128
"""Signatures per request to a worker (small enough to spread a batch over the workers)."""
THREADS_PER_WORKER: Final = 4
"""Requests one worker may have queued (each is waited for by one thread)."""


class WorkerDied(Exception):
    pass


class _Worker:
    """One worker process; any number of threads may ``check`` at once (answers come back in order)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aitbc.node.sigworker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._stdin: IO[bytes] = self.proc.stdin
        self._stdout: IO[bytes] = self.proc.stdout
        self._write_lock = threading.Lock()
        self._turn = threading.Condition()
        self._issued = 0  # tickets handed out (requests written)
        self._served = 0  # answers read
        self.load = 0  # signatures written and not yet answered
        self.dead = False

    def check(self, checks: list[SignatureCheck]) -> list[bool]:
        request = encode_request(checks)
        with self._write_lock:
            if self.dead:
                raise WorkerDied(f"signature worker {self.proc.pid} is gone")
            ticket = self._issued
            self._issued += 1
            try:
                self._stdin.write(request)
                self._stdin.flush()
            except (OSError, ValueError):
                self.dead = True
                # this ticket still takes its turn below, so later tickets are not stuck behind it
        with self._turn:
            while self._served != ticket:
                self._turn.wait()
        try:
            answer = b"" if self.dead else self._stdout.read(len(checks))
            if len(answer) != len(checks):
                self.dead = True
                raise WorkerDied(f"signature worker {self.proc.pid} exited ({self.proc.poll()})")
            return [flag == 1 for flag in answer]
        finally:
            with self._turn:
                self._served += 1
                self._turn.notify_all()

    def stop(self, timeout: float = 5.0) -> None:
        self.dead = True
        with contextlib.suppress(OSError, ValueError), self._write_lock:
            self._stdin.close()  # the worker exits at end of input
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(OSError):
            self._stdout.close()


class SignatureVerifier:
    """Checks ``SignatureCheck``s in bulk on ``workers`` worker processes."""

    def __init__(self, workers: int = 2) -> None:
        self.workers = max(1, workers)
        self._lock = threading.Lock()
        self._pool: list[_Worker] = []
        self._threads: ThreadPoolExecutor | None = None
        self._closed = False

    def start(self) -> None:
        """Start the workers now rather than on the first large batch."""
        with self._lock:
            if self._closed:
                raise RuntimeError("verifier is closed")
            if self._threads is None:
                self._threads = ThreadPoolExecutor(self.workers * THREADS_PER_WORKER, thread_name_prefix="verify")
            for _ in range(self.workers - sum(not w.dead for w in self._pool)):
                self._pool.append(_Worker())

    def _pick(self, size: int) -> _Worker | None:
        with self._lock:
            live = [w for w in self._pool if not w.dead]
            if not live:
                return None
            worker = min(live, key=lambda w: w.load)
            worker.load += size
            return worker

    def _check_chunk(self, checks: list[SignatureCheck]) -> list[bool]:
        worker = self._pick(len(checks))
        if worker is None:
            return check_signatures(checks)
        try:
            return worker.check(checks)
        except WorkerDied as exc:
            log.warning("signature worker failed; checking its chunk here", extra={"error": str(exc)})
            return check_signatures(checks)
        finally:
            with self._lock:
                worker.load -= len(checks)

    def _replace_dead(self) -> None:
        """Reap dead workers and start enough new ones (also the first start)."""
        with self._lock:
            dead = [w for w in self._pool if w.dead]
            self._pool = [w for w in self._pool if not w.dead]
        for worker in dead:
            worker.stop(timeout=1.0)
        self.start()

    async def check(self, checks: list[SignatureCheck]) -> list[bool]:
        """``is_valid_signature_check`` of each, in order; large batches spread over the workers."""
        if len(checks) <= INLINE_MAX or self._closed:
            return check_signatures(checks)
        loop = asyncio.get_running_loop()
        if self._threads is None or any(w.dead for w in self._pool):
            try:
                await loop.run_in_executor(None, self._replace_dead)
            except (OSError, RuntimeError):
                log.exception("cannot start signature workers; checking in threads")
        threads = self._threads
        if threads is None:
            return check_signatures(checks)
        chunks = [checks[i : i + CHUNK] for i in range(0, len(checks), CHUNK)]
        parts = await asyncio.gather(*(loop.run_in_executor(threads, self._check_chunk, c) for c in chunks))
        return [ok for part in parts for ok in part]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            threads, self._threads = self._threads, None
        if threads is not None:
            threads.shutdown(wait=True)
        with self._lock:
            workers, self._pool = self._pool, []
        for worker in workers:
            worker.stop()
