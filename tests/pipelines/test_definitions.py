"""The code location loads, and its shape is what the UI and the CLI rely on."""

import pytest
from dagster import AssetKey, BackfillPolicy, DagsterInstance, Definitions, PartitionKeyRange

from technic_pipelines.definitions import BARS_BACKFILL_JOB, DAILY_SCAN_JOB, defs
from technic_pipelines.partitions import session_partitions

SESSION_ASSETS = ("price_bars", "universe", "market_conditions", "symbol_priority_scores", "scan_results")


def test_definitions_load_and_jobs_resolve():
    Definitions.validate_loadable(defs)
    assert defs.resolve_job_def(DAILY_SCAN_JOB).asset_layer is not None
    assert defs.resolve_job_def(BARS_BACKFILL_JOB) is not None


def test_every_session_asset_shares_partitions_and_backfills_in_one_run():
    graph = defs.resolve_asset_graph()
    for name in SESSION_ASSETS:
        node = graph.get(AssetKey(name))
        assert node.partitions_def == session_partitions
        assert node.backfill_policy == BackfillPolicy.single_run()
        assert node.description


def test_dependency_order():
    graph = defs.resolve_asset_graph()
    parents = {name: {k.path[-1] for k in graph.get(AssetKey(name)).parent_keys} for name in SESSION_ASSETS}
    assert parents == {
        "price_bars": set(),
        "universe": {"price_bars"},
        "market_conditions": {"price_bars"},
        "symbol_priority_scores": {"price_bars", "universe"},
        "scan_results": {"price_bars", "universe", "market_conditions", "symbol_priority_scores"},
    }


def test_a_partition_key_that_is_not_a_session_is_rejected_with_a_message(tmp_path, monkeypatch):
    monkeypatch.setenv("TECHNIC_WAREHOUSE", str(tmp_path))
    with pytest.raises(Exception, match="2024-11-28"):
        defs.resolve_job_def(DAILY_SCAN_JOB).execute_in_process(
            partition_key="2024-11-28", instance=DagsterInstance.ephemeral()
        )
    assert not any(tmp_path.iterdir()), "nothing is written for a rejected key"


def test_a_range_over_holidays_contains_only_sessions():
    keys = session_partitions.get_partition_keys_in_range(PartitionKeyRange("2024-12-20", "2025-01-03"))
    assert keys == [
        "2024-12-20",
        "2024-12-23",
        "2024-12-24",
        "2024-12-26",
        "2024-12-27",
        "2024-12-30",
        "2024-12-31",
        "2025-01-02",
        "2025-01-03",
    ]


def test_checks_schedule_and_jobs_are_registered():
    graph = defs.resolve_asset_graph()
    checks = {(k.asset_key.path[-1], k.name) for k in graph.asset_check_keys}
    assert {
        ("price_bars", "bars_coverage"),
        ("price_bars", "bars_valid_ohlc"),
        ("universe", "universe_reasons"),
        ("scan_results", "results_seq"),
    } <= checks
    assert defs.resolve_schedule_def("market_open_schedule").job_name == DAILY_SCAN_JOB
    assert {j.name for j in defs.resolve_all_job_defs()} >= {DAILY_SCAN_JOB, BARS_BACKFILL_JOB}
