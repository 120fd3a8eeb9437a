"""The sensors that keep the models current: label sessions once their future bars exist, retrain the alpha
models after enough new labeled sessions and the scan predictors after enough new scan runs.

All three run by default (`DefaultSensorStatus.RUNNING`), so a fresh `make up` retrains from scan history as
the README promises; a user who stops one in the UI keeps it stopped (the stored state wins).
"""

import json

from dagster import (
    AssetKey,
    AssetSelection,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from technic_core import calendar
from technic_core.ml.labels import label_ready
from technic_core.warehouse import DATASETS
from technic_pipelines.defs.ml.assets import alpha_models, scan_predictors, signal_outcomes
from technic_pipelines.partitions import session_key
from technic_pipelines.resources import WarehouseResource

#: Documented run tags that make one run cover a partition range (a single-run backfill).
PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"
DEFAULT_MIN_NEW_SESSIONS = 20
DEFAULT_MIN_NEW_RUNS = 50


@sensor(
    # screen_performance measures the same sessions as soon as their labels exist, in the same run
    target=AssetSelection.assets(signal_outcomes) | AssetSelection.assets("screen_performance"),
    minimum_interval_seconds=3600,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Requests signal_outcomes (and screen_performance, which measures the same sessions) for scanned "
        "sessions whose t+10 bars have arrived: one run over the first consecutive range of them per tick."
    ),
)
def label_sensor(context: SensorEvaluationContext, warehouse: WarehouseResource):
    store = warehouse.get()
    bar_sessions = set(store.sessions("bars"))
    labeled = set(store.sessions("outcomes"))
    ready = [s for s in store.sessions("results") if s not in labeled and label_ready(s, bar_sessions)]
    if not ready:
        return SkipReason("no scanned session has become labelable")
    # one run over consecutive sessions only: a session without results inside a range would fail it
    span = [ready[0]]
    for session in ready[1:]:
        if session != calendar.next_session(span[-1]):
            break
        span.append(session)
    start, end = session_key(span[0]), session_key(span[-1])
    return RunRequest(
        run_key=f"signal_outcomes:{start}..{end}",
        tags={PARTITION_RANGE_START_TAG: start, PARTITION_RANGE_END_TAG: end},
    )


def build_alpha_training_sensor(min_new_sessions: int = DEFAULT_MIN_NEW_SESSIONS, name: str = "alpha_training_sensor"):
    """A sensor requesting `alpha_models` once `min_new_sessions` sessions newer than the last request are
    labeled.

    Its cursor holds the event-log position read so far, the latest session a run was requested through
    and the labeled sessions since. Run keys name that latest session, so a request is never made twice.
    """

    @sensor(
        name=name,
        target=[alpha_models],
        minimum_interval_seconds=600,
        default_status=DefaultSensorStatus.RUNNING,
        description=f"Retrains the alpha models after ≥ {min_new_sessions} new labeled sessions (signal_outcomes).",
    )
    def _sensor(context: SensorEvaluationContext):
        state = json.loads(context.cursor) if context.cursor else {"events": None, "through": None, "pending": []}
        pending = set(state["pending"])
        events = state["events"]
        while True:
            page = context.instance.fetch_materializations(
                AssetKey("signal_outcomes"), limit=1000, cursor=events, ascending=True
            )
            through = state["through"]
            pending.update(
                record.partition_key
                for record in page.records
                if record.partition_key and (through is None or record.partition_key > through)
            )
            events = page.cursor
            if not page.has_more:
                break
        ordered = sorted(pending)
        if len(ordered) < min_new_sessions:
            cursor = json.dumps({**state, "events": events, "pending": ordered})
            return SensorResult(
                skip_reason=f"{len(ordered)} new labeled session(s), need {min_new_sessions}", cursor=cursor
            )
        cursor = json.dumps({"events": events, "through": ordered[-1], "pending": []})
        return SensorResult(
            run_requests=[
                RunRequest(
                    run_key=f"alpha_models:through-{ordered[-1]}",
                    tags={"technic/new_labeled_sessions": str(len(ordered))},
                )
            ],
            cursor=cursor,
        )

    return _sensor


alpha_training_sensor = build_alpha_training_sensor()


def build_scan_predictor_sensor(min_new_runs: int = DEFAULT_MIN_NEW_RUNS, name: str = "scan_predictor_sensor"):
    """A sensor requesting `scan_predictors` after `min_new_runs` new rows in `scan_runs`.

    It counts the dataset's files (one per scan, whoever ran it: daily scan, replays, API), so scans that
    never pass through Dagster count too. The cursor is the count at the last request; the run key is the
    count, so a request is never made twice.
    """

    @sensor(
        name=name,
        target=[scan_predictors],
        minimum_interval_seconds=600,
        default_status=DefaultSensorStatus.RUNNING,
        description=f"Retrains the scan predictors after ≥ {min_new_runs} new scan runs.",
    )
    def _sensor(context: SensorEvaluationContext, warehouse: WarehouseResource):
        store = warehouse.get()
        runs = sum(1 for _ in store.root.glob(DATASETS["scan_runs"].file_glob))
        seen = int(context.cursor) if context.cursor else 0
        if runs - seen < min_new_runs:
            return SkipReason(f"{runs - seen} new scan run(s), need {min_new_runs}")
        return SensorResult(run_requests=[RunRequest(run_key=f"scan_predictors:{runs}")], cursor=str(runs))

    return _sensor


scan_predictor_sensor = build_scan_predictor_sensor()
