"""Prediction models: labels, scan history, alpha models, scan predictors and the sensors that retrain them."""

from dagster import Definitions

from technic_pipelines.defs.ml.assets import (
    alpha_champions_load,
    alpha_models,
    scan_predictors,
    scan_predictors_champion_loads,
    scan_runs,
    signal_outcomes,
)
from technic_pipelines.defs.ml.sensors import alpha_training_sensor, label_sensor, scan_predictor_sensor

defs = Definitions(
    assets=[signal_outcomes, scan_runs, alpha_models, scan_predictors],
    asset_checks=[alpha_champions_load, scan_predictors_champion_loads],
    sensors=[label_sensor, alpha_training_sensor, scan_predictor_sensor],
)
