"""CPU priority for batch work that shares a machine with request serving (Linux; elsewhere a no-op).

Two levels, both measured on the 2-core bench machine (``docs/performance.md``, session 10):

- **threads in one process**: the coordinator's event loop serves requests while its worker threads (database
  writer and readers, the chain link, the default executor) do batch work. At equal priority the loop's
  thread waited for a core 28 % of the time under 600 jobs/s; with the workers 10 nice steps lower, 19-20 %.
  Linux keeps a nice value per thread, so ``lower_this_thread`` in a worker's first moments leaves the loop's
  thread where it was (an unprivileged process may lower priority, never raise it back).
- **processes on one box**: the devnet starts each service in a session of its own, and a kernel with
  ``sched_autogroup`` shares the CPU between sessions first, whatever the tasks' own nice values. So
  ``lower_process`` sets both: the process's nice (inherited by the threads it starts) and its session's
  autogroup nice (``/proc/<pid>/autogroup``).

Lower only: a lowered thread still gets every idle cycle, it only yields when something at normal priority is
ready to run. Best effort: a platform or kernel without one of these mechanisms keeps the default priority.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final

MAX_NICE: Final = 19
"""The lowest priority a nice value names."""


def lower_this_thread(steps: int) -> None:
    """Run the calling thread ``steps`` nice levels below where it runs now (Linux: nice is per thread)."""
    if steps <= 0 or sys.platform != "linux":
        return
    tid = threading.get_native_id()
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, tid, min(MAX_NICE, os.getpriority(os.PRIO_PROCESS, tid) + steps))


def background_executor(name: str, nice: int, max_workers: int | None = None) -> ThreadPoolExecutor:
    """A thread pool for batch work whose threads run ``nice`` levels below the thread that submits to it."""
    return ThreadPoolExecutor(max_workers, thread_name_prefix=name, initializer=lower_this_thread, initargs=(nice,))


def lower_process(pid: int, nice: int) -> None:
    """Give process ``pid`` (a child just started, before it starts threads) the nice value ``nice``, and its
    session's autogroup too where the kernel groups by session."""
    if nice <= 0 or sys.platform != "linux":
        return
    with contextlib.suppress(OSError):  # the main thread: the threads it starts inherit its value
        os.setpriority(os.PRIO_PROCESS, pid, min(MAX_NICE, nice))
    autogroup = Path(f"/proc/{pid}/autogroup")
    with contextlib.suppress(OSError):  # absent without CONFIG_SCHED_AUTOGROUP; gone if the child exited
        autogroup.write_text(str(min(MAX_NICE, nice)))
