import pytest

from technic_core.config import ScanConfig, ScreeningRules, Settings, validated
from technic_core.errors import ConfigError


def test_scan_config_rejects_unknown_fields_and_bad_bounds():
    with pytest.raises(ConfigError, match="max_sygnals"):
        validated(ScanConfig, {"max_sygnals": 3})
    with pytest.raises(ConfigError, match="batch_size"):
        validated(ScanConfig, {"batch_size": 0})
    with pytest.raises(ConfigError, match="sectors"):
        validated(ScanConfig, {"sectors": ["Technology"]})  # Yahoo name, not GICS


def test_screening_rules_reject_negative_sector_floor():
    with pytest.raises(ConfigError, match="Utilities"):
        validated(ScreeningRules, {"sector_min_market_cap": {"Utilities": -1}})


def test_settings_from_env_and_overrides(tmp_path):
    env = {"TECHNIC_WAREHOUSE": str(tmp_path), "TECHNIC_SIM_SYMBOLS": "300", "TECHNIC_SOURCE": "files"}
    settings = Settings.from_env(env)
    assert settings.warehouse == tmp_path
    assert settings.sim_symbols == 300
    assert settings.source == "files"
    assert Settings.from_env(env, sim_symbols=12).sim_symbols == 12
    with pytest.raises(ConfigError, match="sim_symbols"):
        Settings.from_env({"TECHNIC_SIM_SYMBOLS": "0"})


def test_settings_are_hashable_for_source_caching():
    assert hash(Settings.from_env({})) == hash(Settings.from_env({}))
