"""A process is running only while it exists, is no zombie, and started no later than when it was seen running."""

import os
import signal
import subprocess
import sys
import time

import psutil

from technic_core.processes import CLOCK_SLACK_S, ProcessFate, process_fate


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_a_running_process_seen_after_it_started_is_running():
    assert process_fate(os.getpid(), time.time()) is ProcessFate.RUNNING


def test_a_killed_and_reaped_process_is_gone():
    child = _sleeper()
    seen = time.time()
    child.kill()
    child.wait()
    assert process_fate(child.pid, seen) is ProcessFate.GONE


def test_a_killed_process_its_parent_has_not_reaped_has_exited():
    child = _sleeper()
    seen = time.time()
    try:
        os.kill(child.pid, signal.SIGKILL)
        give_up = time.monotonic() + 10
        while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE and time.monotonic() < give_up:
            time.sleep(0.01)
        assert process_fate(child.pid, seen) is ProcessFate.EXITED
    finally:
        child.wait()


def test_a_pid_held_by_a_process_that_started_later_is_another_process():
    # this process started well after the moment: as if the run's process had died and its PID been reused
    started = psutil.Process().create_time()
    assert process_fate(os.getpid(), started - CLOCK_SLACK_S - 60) is ProcessFate.REPLACED
    assert process_fate(os.getpid(), started - CLOCK_SLACK_S / 2) is ProcessFate.RUNNING
