"""The code location's shape as a snapshot, so any change to it shows up as a reviewed diff.

Keys, groups, partitioning, dependencies, checks (and whether they block), jobs, schedules and sensors of
`technic_pipelines.definitions.defs` are compared with `snapshots/asset_graph.json`. After an intended
change, regenerate it with `TECHNIC_UPDATE_SNAPSHOTS=1 pytest tests/pipelines/test_asset_graph_snapshot.py`
and commit the diff with the change.
"""

import json
import os
from pathlib import Path

from technic_pipelines.definitions import defs

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph.json"


def _partitions(partitions_def) -> str | None:
    if partitions_def is None:
        return None
    return (
        f"{type(partitions_def).__name__}(cron={partitions_def.cron_schedule!r}, timezone={partitions_def.timezone!r})"
    )


def graph_shape() -> dict[str, object]:
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "partitions": _partitions(node.partitions_def),
            "backfill_policy": str(node.backfill_policy) if node.backfill_policy else None,
            "parents": sorted(parent.to_user_string() for parent in node.parent_keys),
            "checks": {
                check.name: {"blocking": graph.get_check_spec(check).blocking}
                for check in sorted(node.check_keys, key=lambda c: c.name)
            },
        }
    jobs = {
        job.name: sorted(k.to_user_string() for k in job.asset_layer.selected_asset_keys)
        for job in sorted(defs.resolve_all_job_defs(), key=lambda j: j.name)
        if not job.name.startswith("__")
    }
    schedules = {
        schedule.name: {
            "cron": schedule.cron_schedule,
            "timezone": schedule.execution_timezone,
            "job": schedule.job_name,
            "default_status": schedule.default_status.value,
        }
        for schedule in defs.schedules or []
    }
    sensors = {
        sensor.name: {
            "default_status": sensor.default_status.value,
            "minimum_interval_seconds": sensor.minimum_interval_seconds,
            "targets": sorted(
                key.to_user_string() for target in sensor.targets for key in target.job_def.selection.resolve(graph)
            ),
        }
        for sensor in sorted(defs.sensors or [], key=lambda s: s.name)
    }
    return {"assets": assets, "jobs": jobs, "schedules": schedules, "sensors": sensors}


def test_the_asset_graph_matches_its_snapshot():
    shape = json.loads(json.dumps(graph_shape()))
    if os.environ.get("TECHNIC_UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.write_text(json.dumps(shape, indent=2, sort_keys=True) + "\n")
    assert shape == json.loads(SNAPSHOT.read_text())
