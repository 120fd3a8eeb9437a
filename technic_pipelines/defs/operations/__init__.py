"""Operating the Dagster instance rather than defining data: the run launcher the instance config
(`dagster.yaml`, `run_launcher:`) names, which lets run monitoring fail runs whose process died.

It holds no assets, jobs, schedules or sensors, so unlike its sibling packages it exposes no `defs`.
"""
