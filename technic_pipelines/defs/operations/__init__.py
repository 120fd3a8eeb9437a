"""Operating the Dagster instance rather than defining data: the sensors that tell the data team when
something is wrong (a failed run, an overdue scan: `alerts.defs`), and the run launcher the instance config
(`dagster.yaml`, `run_launcher:`) names, which lets run monitoring fail runs whose process died.

Unlike its sibling packages this one exposes no `defs` of its own: the webserver and the daemon import
`launcher.py` through it when they load the instance, and that must not pull in the pipeline's definitions
and settings.
"""
