"""What became of a process that was running at a known moment: still running, or gone.

A PID alone cannot answer that: once a process ends, the operating system may give its PID to another
process. So the question takes the PID together with a moment at which that process was certainly running
(for a Dagster run, the time of the run-start event the process wrote): a process holding the PID now that
started after that moment is another process, and the original one has ended.
"""

from __future__ import annotations

import enum

import psutil

#: How much later than the known moment a process's reported start may be and still count as the same process.
#: The OS reports start times as boot time plus ticks, while the moment comes from the wall clock, so clock
#: adjustments since boot shift one against the other; a process that reused the PID started after the
#: original ended, which is later still.
CLOCK_SLACK_S = 5.0


class ProcessFate(enum.Enum):
    """The answer, worded to complete "the process ..." in a message."""

    RUNNING = "is still running"
    GONE = "no longer exists"
    EXITED = "has exited (its parent has not reaped it yet)"
    REPLACED = "has exited (its PID now belongs to a process started later)"


def process_fate(pid: int, running_at: float) -> ProcessFate:
    """What became of the process on this machine that had `pid` at `running_at` (seconds since the epoch).

    A process this user may not inspect counts as running: without its start time it cannot be told from the
    original, and a caller acting on "gone" (failing a run) must not act on a guess.
    """
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return ProcessFate.EXITED
        started = process.create_time()
    except psutil.ZombieProcess:  # a subclass of NoSuchProcess: catch it first
        return ProcessFate.EXITED
    except psutil.NoSuchProcess:
        return ProcessFate.GONE
    except psutil.AccessDenied:
        return ProcessFate.RUNNING
    if started > running_at + CLOCK_SLACK_S:
        return ProcessFate.REPLACED
    return ProcessFate.RUNNING
