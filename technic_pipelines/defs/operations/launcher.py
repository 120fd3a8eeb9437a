"""The instance's run launcher: Dagster's default one (each run in a worker process under its code server)
that can also tell run monitoring whether a run's process on this machine is still alive.

Why it exists: `DefaultRunLauncher` cannot check run workers (`supports_check_run_worker_health` is False),
so run monitoring passes over STARTED runs. A run whose process died without recording an end (`technic run`
killed with SIGKILL, a reboot that took the daemon, its code server and their run workers down) then stays
STARTED forever, keeps one of the queue's concurrent-run places, and once every place is taken no queued
run, scheduled scans included, is launched again. `technic run` executes in-process, so no launcher knows its
process at all; this one answers for any run, whoever started it, from what the run itself records:

* its machine: the `technic/host` tag, set by `technic run` and, at launch, by this launcher when the code
  server the run worker starts under is a local one;
* its process: the RUN_START event, written by the process that executes the run (the CLI's own process or
  the run worker) and carrying its PID. The event's time is a moment that process was running, which tells it
  from a later process that got the same PID (`technic_core.processes`).

A run without the tag, or from another machine, is reported running: this daemon cannot see that process,
and anything but RUNNING would make run monitoring fail the run.
"""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Iterable, Mapping

from dagster import DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus, RunsFilter

# The one place Technic imports Dagster internals: a run launcher is a documented extension point (the
# instance's `run_launcher:`), but its base types are exported only from these modules. dagster is pinned to
# one release, and tests/pipelines/test_instance_config.py exercises both imports against it.
from dagster._core.launcher import CheckRunHealthResult, DefaultRunLauncher, LaunchRunContext, WorkerStatus
from dagster._core.remote_representation.code_location import GrpcServerCodeLocation
from sqlalchemy.exc import SQLAlchemyError

from technic_core.processes import ProcessFate, process_fate

HOST_TAG = "technic/host"
#: The host tag of a run whose worker runs under a code server elsewhere; it overwrites a tag copied from a
#: re-executed run, which names the machine of that earlier run.
UNKNOWN_HOST = "unknown"
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def host_tags() -> Mapping[str, str]:
    """The tags that mark a run as executed by a process of this machine."""
    return {HOST_TAG: socket.gethostname()}


class LocalProcessRunLauncher(DefaultRunLauncher):
    """`DefaultRunLauncher` plus run-worker health checks for runs whose process ran on this machine."""

    def launch_run(self, context: LaunchRunContext) -> None:
        origin = context.dagster_run.remote_job_origin
        if context.workspace is not None and origin is not None:
            location = context.workspace.get_code_location(origin.location_name)
            # The run worker is a child process of the code server, so it is local when the server is.
            local = isinstance(location, GrpcServerCodeLocation) and (
                location.socket is not None or location.host in LOOPBACK_HOSTS
            )
            # Tagged before the launch, so a launcher that dies right after leaves no untagged run behind.
            self._instance.add_run_tags(context.dagster_run.run_id, host_tags() if local else {HOST_TAG: UNKNOWN_HOST})
        super().launch_run(context)

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        return worker_health(self._instance, run)


def fail_dead_runs(instance: DagsterInstance) -> list[tuple[str, str]]:
    """Fail this machine's STARTED runs whose process is gone and free the pool slots they held; returns
    (run id, reason) of each.

    What run monitoring does in the daemon, for `technic run`, which may run without one: a run killed
    mid-way otherwise keeps its slot of a pool with a limit of one (market_data), and the next run that
    needs the pool would wait for it forever.
    """
    failed = []
    for run in instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.STARTED], tags=dict(host_tags()))):
        health = worker_health(instance, run)
        if health.status != WorkerStatus.FAILED:
            continue
        instance.report_run_failed(run, health.msg)
        if instance.event_log_storage.supports_global_concurrency_limits:
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        failed.append((run.run_id, health.msg or "its process is gone"))
    return failed


def initialize_pools(instance: DagsterInstance, pools: Iterable[str]) -> None:
    """Give each of `pools` its limit row (the instance's default limit) before a run claims a slot of it.

    Dagster creates a pool's row when a run first claims one of its slots. On PostgreSQL two runs doing that
    at once make one of them fail: the loser's INSERT breaks the unique key, and the UPDATE Dagster falls back
    to runs in the transaction that error aborted. Made here instead, the loser of the same race finds the
    winner's row and goes on, and the runs themselves find the row made.
    """
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return
    if instance.get_concurrency_config().pool_config.default_pool_limit is None:
        return
    for pool in sorted(set(pools) - storage.get_concurrency_keys()):
        try:
            storage.initialize_concurrency_limit_to_default(pool)
        except SQLAlchemyError:
            if pool not in storage.get_concurrency_keys():
                raise


def worker_health(instance: DagsterInstance, run: DagsterRun) -> CheckRunHealthResult:
    """Whether the process that executes `run` is alive, when it ran on this machine (see the module)."""
    host = socket.gethostname()
    if run.tags.get(HOST_TAG) != host:
        return CheckRunHealthResult(WorkerStatus.RUNNING, "its process is not on this machine; not checked")
    starts = instance.get_records_for_run(run.run_id, of_type=DagsterEventType.RUN_START, limit=1)
    if not starts.records:
        # Not started yet: run monitoring's start timeout covers a process that dies before this point.
        return CheckRunHealthResult(WorkerStatus.RUNNING, "it has not started yet")
    entry = starts.records[0].event_log_entry
    pid = entry.dagster_event.pid if entry.dagster_event is not None else None
    if pid is None:
        # Dagster always records it; without one there is no process to look at, and no reason to fail the run.
        return CheckRunHealthResult(WorkerStatus.RUNNING, "its start event names no process; not checked")
    fate = process_fate(pid, entry.timestamp)
    if fate is ProcessFate.RUNNING:
        return CheckRunHealthResult(WorkerStatus.RUNNING, f"process {pid} on {host} is running")
    started = dt.datetime.fromtimestamp(entry.timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return CheckRunHealthResult(
        WorkerStatus.FAILED,
        f"process {pid} on {host}, which started this run at {started}, {fate.value}: it was killed or "
        "crashed before it could record how the run ended",
    )
