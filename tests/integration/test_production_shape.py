"""The production shape on loopback: Dagster's storage in a real PostgreSQL server, the warehouse in a real
S3-compatible bucket (moto's server), every run a real process, the API a real `technic serve`, run
monitoring a real `dagster-daemon`.

One stack (`scripts/prod_stack.py`, the code behind `make up-prod`) serves the module. Against it, in order:

1. `technic run` of `FIRST` on the empty bucket, SIGKILLed half-way through its bar backfill (33 sessions:
   the scan needs 30); the daemon fails that run and frees its pool slots; `technic run` again resumes;
2. the daily run of `SECOND` while a client tails the live session through the API;
3. `SECOND` again by two runs at once: the market-open schedule's and a manual backfill's.

Meanwhile `FIRST` is run, uninterrupted, into a local directory: the reference the resumed bucket must equal
byte for byte (the warehouse writes identical bytes on both kinds of root). The tests below check what each
step left in the bucket, in the API and in Postgres.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.util
import io
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import polars as pl
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter, build_schedule_context
from httpx_sse import ServerSentEvent

from technic_core import calendar
from technic_core.storage import ObjectStorage
from technic_core.warehouse import Warehouse
from technic_pipelines.definitions import BARS_BACKFILL_JOB, DAILY_SCAN_JOB, defs
from technic_pipelines.defs.ml.sensors import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG
from technic_pipelines.defs.scan.schedules import market_open_schedule
from tests.api.test_streams import stream, until_end
from tests.environment import unavailable
from tests.integration.test_crash_recovery import _failure_message, _start_pid

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _load_stack_module():
    """scripts/prod_stack.py is a script, not a package module: loaded by path, registered under its name."""
    spec = importlib.util.spec_from_file_location("prod_stack", REPO / "scripts" / "prod_stack.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


prod_stack = _load_stack_module()

#: Bar history starts here, so the first run backfills 33 sessions instead of a year: every request of a run
#: is a round trip to the S3 server, and 30 sessions are what a symbol needs to be scanned.
START = dt.date(2024, 4, 15)
FIRST = dt.date(2024, 5, 31)
SECOND = calendar.next_session(FIRST)
HISTORY = calendar.sessions_between(START, FIRST)
SYMBOLS = "200"
WAREHOUSE = prod_stack.WAREHOUSE
#: Datasets with one partition per session that a daily run writes.
SESSION_DATASETS = ("bars", "index_bars", "universe", "conditions", "results", "rejections", "priority", "screens")
#: Run monitoring as configured in dagster.yaml, only faster: the killed run must be failed, and the pool slot
#: it held freed, within seconds rather than the minute the project's intervals allow.
RUN_MONITORING = {"poll_interval_seconds": 1, "free_slots_after_run_end_seconds": 1}


@dataclass
class Shape:
    """What the steps left behind, for the tests to check."""

    stack: object
    api: str
    reference: Path
    killed_pid: int
    bars_when_killed: int
    resume_log: str
    live_events: list[ServerSentEvent]
    after_daily_run: dict[str, bytes]
    concurrent: dict[str, subprocess.Popen[bytes]]


def _bucket(stack) -> Warehouse:
    """The bucket's warehouse, read through an explicitly configured filesystem: no AWS_* variables in the test
    process, whose other tests must not see them."""
    return Warehouse(ObjectStorage(WAREHOUSE, filesystem=stack.s3_filesystem()).root)


def _bucket_objects(stack) -> dict[str, bytes]:
    """Every object of the bucket's warehouse, by key relative to its root."""
    filesystem = stack.s3_filesystem()
    base = WAREHOUSE.removeprefix("s3://")
    infos = filesystem.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    return {
        info.path.removeprefix(base + "/"): filesystem.open_input_stream(info.path).read()
        for info in infos
        if info.type == pafs.FileType.File
    }


def _local_objects(root: Path) -> dict[str, bytes]:
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in root.rglob("*") if path.is_file()}


def _digests(objects: dict[str, bytes], session: dt.date | None = None) -> dict[str, str]:
    """sha256 of the session datasets' partition files (of `session` only, when given). Left out: scan_runs/
    (a scan's id and timings), the catalog and source.json (they name their own root), local caches."""
    partition = f"/date={session.isoformat()}/" if session else "/date="
    return {
        key: hashlib.sha256(data).hexdigest()
        for key, data in objects.items()
        if key.split("/")[0] in SESSION_DATASETS and partition in key
    }


def _require_parts() -> None:
    """Skip outside CI when PostgreSQL's server or moto's is not installed; in CI a missing part fails."""
    try:
        prod_stack.postgres_bin()
        if not (BIN / "moto_server").exists():
            raise prod_stack.StackError(
                "moto's S3 server is missing: install the test extras (`pip install -e .[test]`)"
            )
    except prod_stack.StackError as exc:
        unavailable(str(exc), "CI must run the production-shape test")


def _finished(stack, name: str, args: list[str], timeout_s: float = 120, **env: str) -> str:
    """Run `args` as a process of the stack until it exits 0; its log."""
    process = stack.start(name, args, **env)
    try:
        returncode = process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise AssertionError(f"{name} did not finish in {timeout_s}s\n{stack.log_tails()}") from None
    log = (stack.logs / f"{name}.log").read_text(errors="replace")
    assert returncode == 0, f"{name} exited {returncode}\n{stack.log_tails()}"
    return log


def _technic_run(session: dt.date, warehouse: str) -> list[str]:
    return [str(BIN / "technic"), "run", "--date", session.isoformat(), "--warehouse", warehouse]


def _job(job: str, tags: dict[str, str], directory: Path) -> list[str]:
    """`dagster job execute`: a run of the project's job in a process of its own, recorded in the instance;
    its steps in that process, as a run worker and `technic run` execute them (the command's default would
    start a process per step)."""
    config = directory / "in_process.yaml"
    config.write_text(json.dumps({"execution": {"config": {"in_process": {}}}}))
    module = ["-m", "technic_pipelines.definitions"]
    return [str(BIN / "dagster"), "job", "execute", *module, "-j", job, "-c", str(config), "--tags", json.dumps(tags)]


def _scheduled_tags(session: dt.date) -> dict[str, str]:
    """The tags of the run the market-open schedule requests at the open after `session`, as the daemon
    launches it: the request's own tags, its partition and the schedule's name."""
    tick = dt.datetime.combine(calendar.next_session(session), dt.time(9, 30), ZoneInfo(calendar.NEW_YORK))
    with build_schedule_context(scheduled_execution_time=tick, repository_def=defs.get_repository_def()) as context:
        [request] = market_open_schedule.evaluate_tick(context).run_requests or []
    assert request.partition_key == session.isoformat()
    return {**request.tags, "dagster/partition": request.partition_key, "dagster/schedule_name": "market_open_schedule"}


def _kill_mid_backfill(stack, store: Warehouse) -> tuple[int, int]:
    """Start `technic run` of FIRST on the empty bucket, SIGKILL it while its backfill is half written;
    (its pid, the bar partitions it had written)."""
    process = stack.start("first_killed", _technic_run(FIRST, WAREHOUSE))

    def some_bars() -> bool:
        assert process.poll() is None, f"the run ended before it could be killed\n{stack.log_tails()}"
        return len(store.sessions("bars")) >= 5

    prod_stack.wait_until(some_bars, "the backfill to write some bar partitions", 120, stack.log_tails)
    os.killpg(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    return process.pid, len(store.sessions("bars"))


def _killed_run_failed(instance: DagsterInstance, pid: int) -> bool:
    runs = instance.get_runs(RunsFilter(job_name=BARS_BACKFILL_JOB, statuses=[DagsterRunStatus.FAILURE]))
    return any(_start_pid(instance, run.run_id) == pid for run in runs)


@pytest.fixture(scope="module")
def shape(tmp_path_factory) -> Iterator[Shape]:
    _require_parts()
    settings = {"TECHNIC_SIM_SYMBOLS": SYMBOLS, "TECHNIC_START_DATE": START.isoformat()}
    directory = tmp_path_factory.mktemp("prod")
    with prod_stack.production_stack(directory / "stack", settings, RUN_MONITORING) as stack:
        stack.start_daemon()
        # Heartbeats well inside the stream client's read timeout while a run computes before its first batch.
        api = stack.serve_api(prod_stack.free_port(), TECHNIC_API_HEARTBEAT_S="1")
        reference = directory / "reference"
        reference_first = stack.start("reference_first", _technic_run(FIRST, str(reference)))
        store = _bucket(stack)

        killed_pid, bars_when_killed = _kill_mid_backfill(stack, store)
        with DagsterInstance.from_config(str(stack.home)) as instance:
            prod_stack.wait_until(
                lambda: _killed_run_failed(instance, killed_pid),
                "run monitoring to fail the killed run",
                60,
                stack.log_tails,
            )
        resume_log = _finished(stack, "first_resumed", _technic_run(FIRST, WAREHOUSE))

        assert reference_first.wait(timeout=120) == 0, stack.log_tails()

        # a live session through the API while the daily run writes it
        with stream(api, f"/events/results/{SECOND.isoformat()}") as events:
            daily = stack.start("second", _technic_run(SECOND, WAREHOUSE))
            live_events = until_end(events)
        assert daily.wait(timeout=120) == 0, stack.log_tails()
        after_daily_run = _bucket_objects(stack)

        # one partition, two runs at once: the schedule's and a manual single-run backfill's
        backfill_tags = {PARTITION_RANGE_START_TAG: SECOND.isoformat(), PARTITION_RANGE_END_TAG: SECOND.isoformat()}
        concurrent = {
            name: stack.start(name, _job(DAILY_SCAN_JOB, tags, directory))
            for name, tags in (("scheduled", _scheduled_tags(SECOND)), ("backfill", backfill_tags))
        }
        for process in concurrent.values():
            process.wait(timeout=120)
        yield Shape(
            stack, api, reference, killed_pid, bars_when_killed, resume_log, live_events, after_daily_run, concurrent
        )


def test_a_killed_run_resumes_to_the_data_of_an_uninterrupted_one(shape):
    assert 5 <= shape.bars_when_killed < len(HISTORY), "killed mid-backfill"
    [resumed] = [line for line in shape.resume_log.splitlines() if "backfill (" in line]
    assert f"backfill ({len(HISTORY)} sessions)" not in resumed, "the resume loads only what is missing"
    bucket = shape.after_daily_run
    first = {key: digest for key, digest in _digests(bucket).items() if SECOND.isoformat() not in key}
    reference = _digests(_local_objects(shape.reference))
    assert {key.split("/")[1] for key in first if key.startswith("bars/")} == {f"date={s}" for s in HISTORY}
    assert first == {key: digest for key, digest in reference.items() if SECOND.isoformat() not in key}
    for key in first:  # every object a reader can see is a whole Parquet file
        pq.read_table(io.BytesIO(bucket[key]))


def test_the_api_reads_results_from_the_bucket(shape):
    stored = _bucket(shape.stack).read("results", FIRST, FIRST)
    assert stored.height > 0
    with httpx.Client(base_url=shape.api, timeout=30) as http:
        page = http.get(f"/results/{FIRST.isoformat()}", params={"limit": 1000, "columns": "symbol,tech_rating"})
        assert page.status_code == 200, page.text
        body = page.json()
        single = http.get(f"/results/{FIRST.isoformat()}/{stored['symbol'][0]}")
        assert single.status_code == 200, single.text  # a single row comes from DuckDB's views over the bucket
        partitions = http.get("/partitions")
    assert body["total"] == stored.height == len(body["rows"])
    served = pl.DataFrame(body["rows"]).select("symbol", "tech_rating").sort("symbol")
    expected = stored.select("symbol", "tech_rating").sort("symbol")
    assert served["symbol"].to_list() == expected["symbol"].to_list()
    assert (served["tech_rating"] - expected["tech_rating"]).abs().max() < 1e-4  # 6 significant digits on the wire
    assert partitions.status_code == 200 and SECOND.isoformat() in partitions.text


def test_the_api_tails_a_live_session_from_the_bucket(shape):
    kinds = [event.event for event in shape.live_events]
    assert kinds[-1] == "end" and json.loads(shape.live_events[-1].data)["reason"] == "complete"
    rows = [row for event in shape.live_events if event.event == "result" for row in json.loads(event.data)["rows"]]
    stored = _bucket(shape.stack).read("results", SECOND, SECOND)
    assert stored.height > 0
    assert [row["seq"] for row in rows] == list(range(1, stored.height + 1)), "every row once, in order"
    assert sorted(row["symbol"] for row in rows) == sorted(stored["symbol"])


def test_two_runs_of_one_partition_at_once_leave_one_whole_partition(shape):
    codes = {name: process.returncode for name, process in shape.concurrent.items()}
    assert 0 in codes.values(), f"{codes}\n{shape.stack.log_tails()}"
    bucket = _bucket_objects(shape.stack)
    together = _digests(bucket, SECOND)
    assert {key.split("/")[0] for key in together} >= {"bars", "universe", "results"}
    assert together == _digests(shape.after_daily_run, SECOND), "the objects one daily run left, no more, no less"
    for key in together:
        pq.read_table(io.BytesIO(bucket[key]))
    results = _bucket(shape.stack).read("results", SECOND, SECOND)
    assert results["seq"].sort().to_list() == list(range(1, results.height + 1))
    assert results["symbol"].is_unique().all()


def test_postgres_holds_the_run_records(shape):
    with DagsterInstance.from_config(str(shape.stack.home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        runs = instance.get_runs()
        [killed] = [run for run in runs if _start_pid(instance, run.run_id) == shape.killed_pid]
        assert (killed.job_name, killed.status) == (BARS_BACKFILL_JOB, DagsterRunStatus.FAILURE)
        assert f"process {shape.killed_pid} on {socket.gethostname()}" in _failure_message(instance, killed.run_id)
        succeeded = [run.job_name for run in runs if run.status == DagsterRunStatus.SUCCESS]
        # the resume's and the reference's backfills; FIRST in both warehouses, SECOND in the bucket
        assert succeeded.count(BARS_BACKFILL_JOB) == 2
        assert succeeded.count(DAILY_SCAN_JOB) >= 3 + 1  # and at least one of the two concurrent runs
        scheduled = [run for run in runs if run.tags.get("dagster/schedule_name") == "market_open_schedule"]
        backfill = [run for run in runs if run.tags.get(PARTITION_RANGE_START_TAG) == SECOND.isoformat()]
        assert len(scheduled) == len(backfill) == 1
        records = [instance.get_run_record_by_id(run.run_id) for run in (*scheduled, *backfill)]
        assert all(record is not None and record.start_time and record.end_time for record in records)
        assert max(r.start_time for r in records) < min(r.end_time for r in records), "the two ran at once"
    with shape.stack.postgres.connect() as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM runs")
        assert cursor.fetchone()[0] == len(runs)
