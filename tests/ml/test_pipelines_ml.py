"""The ML assets, checks and sensors on tiny simulated warehouses, through Dagster's own test harness."""

from __future__ import annotations

import shutil

from dagster import (
    AssetKey,
    AssetMaterialization,
    AssetSelection,
    DagsterInstance,
    Definitions,
    RunRequest,
    SkipReason,
    build_sensor_context,
    materialize,
)

from technic_core.ml.registry import ModelRegistry
from technic_pipelines.definitions import defs as code_location
from technic_pipelines.defs import ml
from technic_pipelines.defs.ml.assets import alpha_champions_load, alpha_models, scan_runs, signal_outcomes
from technic_pipelines.defs.ml.sensors import (
    DEFAULT_MIN_NEW_RUNS,
    DEFAULT_MIN_NEW_SESSIONS,
    PARTITION_RANGE_END_TAG,
    PARTITION_RANGE_START_TAG,
    build_alpha_training_sensor,
    build_scan_predictor_sensor,
    label_sensor,
)
from technic_pipelines.partitions import session_key
from technic_pipelines.resources import WarehouseResource


def _resources(store) -> dict[str, object]:
    return {"warehouse": WarehouseResource(root=str(store.root))}


def test_the_ml_module_wires_into_the_code_location():
    Definitions.validate_loadable(code_location)
    graph = code_location.resolve_asset_graph()
    parents = {
        name: {k.path[-1] for k in graph.get(AssetKey(name)).parent_keys}
        for name in ("signal_outcomes", "alpha_models", "scan_predictors")
    }
    assert parents == {
        "signal_outcomes": {"scan_results", "price_bars"},
        "alpha_models": {"signal_outcomes"},
        "scan_predictors": {"scan_runs", "scan_results"},
    }
    assert {s.name for s in ml.defs.sensors} == {"label_sensor", "alpha_training_sensor", "scan_predictor_sensor"}


def test_signal_outcomes_labels_a_session_once_its_future_bars_exist(store):
    session = store.sessions("outcomes")[-1]
    expected = store.read("outcomes", session, session)
    shutil.rmtree(store.root / "outcomes" / f"date={session.isoformat()}")
    result = materialize([signal_outcomes], partition_key=session_key(session), resources=_resources(store))
    assert result.success
    assert store.read("outcomes", session, session).equals(expected)
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "outcomes_labeled" and check.passed


def test_signal_outcomes_refuses_a_session_without_its_future(store):
    session = store.sessions("results")[-1]  # the sandbox's last session: t + 10 is not loaded
    result = materialize(
        [signal_outcomes], partition_key=session_key(session), resources=_resources(store), raise_on_error=False
    )
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert "cannot be labeled yet" in failure.description
    assert not store.has_partition("outcomes", session)


def test_scan_runs_replays_sampled_scans_of_the_session(store):
    session = store.sessions("results")[-1]
    result = materialize([scan_runs], partition_key=session_key(session), resources=_resources(store))
    assert result.success
    runs = store.read("scan_runs", session, session)
    assert runs.height == 9  # the daily scan and 8 replays
    materialization = result.get_asset_materialization_events()[0].materialization
    assert materialization.metadata["dagster/row_count"].value == 8


def test_alpha_models_trains_registers_and_shows_metrics(store):
    result = materialize([alpha_models, alpha_champions_load], resources=_resources(store))
    assert result.success
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert "data:image/png;base64," in metadata["rank_ic_by_session"].value
    assert "| predictor | rank_ic | icir | decile_spread | sessions |" in metadata["alpha_5d_metrics"].value
    assert metadata["alpha_5d_promoted"].value is True and metadata["alpha_10d_version"].value == "v0001"
    checks = {evaluation.check_name: evaluation for evaluation in result.get_asset_check_evaluations()}
    assert set(checks) == {"alpha_beats_baselines", "alpha_champions_load"}
    assert checks["alpha_champions_load"].passed


def test_a_champion_that_falls_back_fails_the_health_check(trained_store):
    registry = ModelRegistry(trained_store)
    champion = registry.champion("alpha_5d")
    (registry.root / "alpha_5d" / champion / "model.ubj").write_bytes(b"truncated")
    registry.promote(
        "alpha_5d",
        registry.create_version(
            "alpha_5d", {"model.ubj": b"junk", "features.json": b"[]"}, registry.manifest("alpha_5d", champion), {}
        ),
        "a broken champion over a broken one",
    )
    result = materialize(
        [alpha_models, alpha_champions_load],
        resources=_resources(trained_store),
        selection=AssetSelection.checks(alpha_champions_load),
    )
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed
    assert "alpha_5d: no loadable version" in check.description
    assert "alpha_10d: champion v0001 loaded" in check.description


def test_alpha_models_without_enough_history_fails_clearly(store):
    for session in store.sessions("outcomes")[30:]:
        shutil.rmtree(store.root / "outcomes" / f"date={session.isoformat()}")
    result = materialize([alpha_models], resources=_resources(store), raise_on_error=False)
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert "needs ≥ " in failure.description and "labeled sessions" in failure.description
    assert not (store.root / "models").exists()


def test_alpha_training_sensor_counts_new_labeled_sessions_once():
    instance = DagsterInstance.ephemeral()
    sensor = build_alpha_training_sensor(min_new_sessions=3)
    assert build_alpha_training_sensor().name == "alpha_training_sensor" and DEFAULT_MIN_NEW_SESSIONS == 20

    def label(*sessions: str) -> None:
        for session in sessions:
            instance.report_runless_asset_event(AssetMaterialization("signal_outcomes", partition=session))

    def tick(cursor: str | None):
        return sensor(build_sensor_context(instance=instance, cursor=cursor))

    label("2019-05-01", "2019-05-02")
    first = tick(None)
    assert not first.run_requests and "2 new labeled session(s), need 3" in first.skip_reason.skip_message
    label("2019-05-02", "2019-05-03")  # a re-labeled session counts once
    second = tick(first.cursor)
    (request,) = second.run_requests
    assert request.run_key == "alpha_models:through-2019-05-03"
    assert request.asset_selection is None or request.asset_selection == [AssetKey("alpha_models")]
    assert not tick(second.cursor).run_requests
    label("2019-05-01", "2019-05-06", "2019-05-07")  # 05-01 is older than the last request: not new
    assert not tick(second.cursor).run_requests
    label("2019-05-08")
    assert tick(second.cursor).run_requests[0].run_key == "alpha_models:through-2019-05-08"


def test_scan_predictor_sensor_waits_for_enough_new_runs(store):
    sensor = build_scan_predictor_sensor(min_new_runs=100)
    assert DEFAULT_MIN_NEW_RUNS == 50
    daily_runs = len(store.sessions("results"))
    result = sensor(build_sensor_context(cursor=None, resources=_resources(store)))
    (request,) = result.run_requests
    assert request.run_key == f"scan_predictors:{daily_runs}" and result.cursor == str(daily_runs)
    skipped = sensor(build_sensor_context(cursor=result.cursor, resources=_resources(store)))
    assert isinstance(skipped, SkipReason) and "0 new scan run(s), need 100" in skipped.skip_message


def test_label_sensor_requests_consecutive_labelable_sessions_in_one_run(store):
    sessions = store.sessions("outcomes")
    for session in sessions[-5:]:
        shutil.rmtree(store.root / "outcomes" / f"date={session.isoformat()}")
    request = label_sensor(build_sensor_context(resources=_resources(store)))
    assert isinstance(request, RunRequest)
    assert request.tags[PARTITION_RANGE_START_TAG] == session_key(sessions[-5])
    assert request.tags[PARTITION_RANGE_END_TAG] == session_key(sessions[-1])
    assert request.run_key == f"signal_outcomes:{session_key(sessions[-5])}..{session_key(sessions[-1])}"
    # a session that was never scanned splits the range: the run stops before it
    shutil.rmtree(store.root / "results" / f"date={sessions[-3].isoformat()}")
    request = label_sensor(build_sensor_context(resources=_resources(store)))
    assert request.tags[PARTITION_RANGE_END_TAG] == session_key(sessions[-4])
