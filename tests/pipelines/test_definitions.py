"""The code location loads, and its shape is what the UI and the CLI rely on."""

from dagster import AssetKey, BackfillPolicy, Definitions

from technic_pipelines.definitions import BARS_BACKFILL_JOB, DAILY_SCAN_JOB, defs
from technic_pipelines.partitions import session_partitions

SESSION_ASSETS = ("price_bars", "universe", "market_conditions", "scan_results")


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
        "scan_results": {"price_bars", "universe", "market_conditions"},
    }
