"""Batch work yields the CPU to request serving: a worker thread lowers only itself, a started child is lowered
with its session's autogroup (``aitbc.runtime.priority``)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from aitbc.devnet.process import BATCH_NICE, ManagedProcess
from aitbc.runtime.priority import MAX_NICE, background_executor, lower_process, lower_this_thread

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice and autogroups are Linux's")


def thread_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def nice_in_a_thread(steps: int) -> int:
    seen: list[int] = []

    def work() -> None:
        lower_this_thread(steps)
        seen.append(thread_nice())

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(10)
    return seen[0]


def test_a_worker_thread_lowers_itself_and_not_the_thread_that_started_it() -> None:
    before = thread_nice()
    assert nice_in_a_thread(3) == min(MAX_NICE, before + 3)
    assert thread_nice() == before


def test_a_background_executor_runs_its_work_lowered_under_its_name() -> None:
    before = thread_nice()
    with background_executor("batch", 4, max_workers=2) as pool:
        name, nice = pool.submit(lambda: (threading.current_thread().name, thread_nice())).result(10)
    assert name.startswith("batch") and nice == min(MAX_NICE, before + 4)
    assert thread_nice() == before


def test_no_steps_and_the_lowest_priority_are_limits() -> None:
    before = thread_nice()
    assert nice_in_a_thread(0) == before
    assert nice_in_a_thread(100) == MAX_NICE


def test_a_started_child_runs_lowered_and_so_does_its_session() -> None:
    child = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        lower_process(child.pid, 7)
        assert os.getpriority(os.PRIO_PROCESS, child.pid) == max(7, os.getpriority(os.PRIO_PROCESS, 0))
        autogroup = Path(f"/proc/{child.pid}/autogroup")
        if autogroup.exists():  # a kernel with sched_autogroup: its session's share is lowered too
            assert autogroup.read_text().split()[-1] == "7"
    finally:
        child.kill()
        child.wait()


def test_a_child_already_gone_is_no_error() -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    lower_process(child.pid, 5)


@pytest.mark.parametrize("nice", [BATCH_NICE, 0])
def test_the_devnet_starts_batch_services_lowered_and_a_coordinator_not(tmp_path: Path, nice: int) -> None:
    process = ManagedProcess("svc", ["sleep", "30"], tmp_path / "svc.log", "http://127.0.0.1:9/healthz", nice=nice)
    process.start()
    assert process.proc is not None
    try:
        own = os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getpriority(os.PRIO_PROCESS, process.proc.pid) == max(nice, own)
    finally:
        process.stop()
