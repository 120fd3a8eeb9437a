from pathlib import Path

import pytest

from technic_core.config import ScanConfig, ScreeningRules, Settings, validated
from technic_core.errors import ConfigError
from technic_core.storage import LocalStorage, ObjectStorage
from technic_core.warehouse import Warehouse

#: Every variable `Settings` read before it became a pydantic-settings class, with a value and the field
#: value it must still give.
PREVIOUS_NAMES = {
    "TECHNIC_WAREHOUSE": ("/data/w", "warehouse", "/data/w"),
    "TECHNIC_SOURCE": ("files", "source", "files"),
    "TECHNIC_SIM_SYMBOLS": ("300", "sim_symbols", 300),
    "TECHNIC_SIM_SEED": ("11", "sim_seed", 11),
    "TECHNIC_FILES_DIR": ("/data/bars", "files_dir", Path("/data/bars")),
    "TECHNIC_FILES_STRICT": ("false", "files_strict", False),
    "POLYGON_BASE_URL": ("http://127.0.0.1:9", "polygon_base_url", "http://127.0.0.1:9"),
    "POLYGON_CALLS_PER_MINUTE": ("0", "polygon_calls_per_minute", 0.0),
    "TECHNIC_POLYGON_REFERENCE_REFRESH_DAYS": ("7", "polygon_reference_refresh_days", 7),
    "TECHNIC_POLYGON_DETAILS_REFRESH_DAYS": ("30", "polygon_details_refresh_days", 30),
    "TECHNIC_POLYGON_DETAILS_PER_RUN": ("5", "polygon_details_per_run", 5),
    "TECHNIC_POLYGON_VOLATILITY_INDEX": ("true", "polygon_volatility_index", True),
}


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No Settings variable in the process and a working directory without `.env`: a test sets what it reads."""
    for field in Settings.model_fields:
        for name in Settings.env_names(field):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


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


def test_settings_from_a_given_environment_and_overrides(tmp_path):
    env = {"TECHNIC_WAREHOUSE": str(tmp_path), "TECHNIC_SIM_SYMBOLS": "300", "TECHNIC_SOURCE": "files"}
    settings = Settings.from_env(env)
    assert (settings.warehouse, settings.sim_symbols, settings.source) == (str(tmp_path), 300, "files")
    assert Settings.from_env(env, sim_symbols=12).sim_symbols == 12
    assert Settings.from_env(env, sim_symbols=None).sim_symbols == 300  # None: not overridden
    assert Settings.from_env({"TECHNIC_SIM_SYMBOLS": ""}).sim_symbols == 5_000  # empty: unset
    with pytest.raises(ConfigError, match=r"unknown setting.*sim_symbol\b"):
        Settings.from_env(env, sim_symbol=12)


@pytest.mark.parametrize("name", sorted(PREVIOUS_NAMES))
def test_every_previous_variable_name_still_sets_its_field(name):
    raw, field, expected = PREVIOUS_NAMES[name]
    assert getattr(Settings.from_env({name: raw}), field) == expected


def test_a_given_environment_replaces_the_process_one_and_dotenv(clean_environment, monkeypatch):
    (clean_environment / ".env").write_text("TECHNIC_SIM_SEED=99\n")
    monkeypatch.setenv("TECHNIC_SOURCE", "files")
    settings = Settings.from_env({"TECHNIC_SIM_SYMBOLS": "300"})
    assert (settings.sim_symbols, settings.sim_seed, settings.source) == (300, 7, "simulated")


def test_process_environment_then_dotenv_then_defaults(clean_environment, monkeypatch):
    (clean_environment / ".env").write_text(
        "# one file for every part of Technic: variables Settings does not know are ignored\n"
        "TECHNIC_SIM_SYMBOLS=300\n"
        "TECHNIC_SIM_SEED=11\n"
        "POLYGON_API_KEY=pk-from-dotenv\n"
        "TECHNIC_API_MAX_STREAMS_PER_KEY=3\n"
        "TECHNIC_START_DATE=2020-01-02\n"
        "DAGSTER_HOME=/tmp/dagster\n"
    )
    monkeypatch.setenv("TECHNIC_SIM_SYMBOLS", "400")
    settings = Settings.from_env()
    assert (settings.sim_symbols, settings.sim_seed, settings.source) == (400, 11, "simulated")
    assert settings.polygon_api_key.get_secret_value() == "pk-from-dotenv"
    assert Settings.from_env(sim_seed=3).sim_seed == 3
    (clean_environment / ".env").unlink()
    assert Settings.from_env() == Settings.from_env({"TECHNIC_SIM_SYMBOLS": "400"})


def test_process_environment_errors_name_the_variable(clean_environment, monkeypatch):
    monkeypatch.setenv("TECHNIC_SIM_SYMBOLS", "0")
    with pytest.raises(ConfigError, match=r"^invalid Settings: TECHNIC_SIM_SYMBOLS \(sim_symbols\): must be ≥ 1$"):
        Settings.from_env()


def test_polygon_variables_accept_the_technic_prefix_and_the_vendor_name_which_loses():
    vendor = Settings.from_env({"POLYGON_API_KEY": "pk-vendor", "POLYGON_CALLS_PER_MINUTE": "60"})
    assert vendor.polygon_api_key.get_secret_value() == "pk-vendor" and vendor.polygon_calls_per_minute == 60
    both = Settings.from_env({"POLYGON_API_KEY": "pk-vendor", "TECHNIC_POLYGON_API_KEY": "pk-technic"})
    assert both.polygon_api_key.get_secret_value() == "pk-technic"
    assert Settings.from_env({"TECHNIC_POLYGON_BASE_URL": "http://proxy"}).polygon_base_url == "http://proxy"
    # Code and Dagster config use the field names.
    assert Settings.from_env({}, polygon_api_key="pk-code").polygon_api_key.get_secret_value() == "pk-code"
    assert Settings(polygon_calls_per_minute=0).polygon_calls_per_minute == 0


def test_keys_are_secret_in_every_rendering():
    settings = Settings.from_env({"POLYGON_API_KEY": "pk-secret-4711", "TECHNIC_API_KEYS": " alpha , beta,,"})
    assert settings.polygon_api_key.get_secret_value() == "pk-secret-4711"
    assert [key.get_secret_value() for key in settings.api_keys] == ["alpha", "beta"]
    for rendering in (repr(settings), str(settings), settings.model_dump_json(), str(settings.model_dump())):
        assert "pk-secret-4711" not in rendering and "alpha" not in rendering and "beta" not in rendering
    assert Settings.from_env({}).polygon_api_key is None and Settings.from_env({}).api_keys == ()


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("/abs/path/warehouse", LocalStorage),
        ("relative/path", LocalStorage),
        ("file:///abs/path/warehouse", LocalStorage),
        ("file:/abs/path/warehouse", LocalStorage),
        ("s3://bucket/prefix/warehouse", ObjectStorage),
        ("gs://bucket/w", ObjectStorage),
        ("memory://somewhere/w", ObjectStorage),
    ],
)
def test_warehouse_is_kept_as_the_uri_text_given(text, kind):
    settings = Settings.from_env({"TECHNIC_WAREHOUSE": text})
    assert settings.warehouse == text
    assert isinstance(Warehouse.from_settings(settings).storage, kind)


def test_warehouse_given_as_a_path_becomes_text_and_a_collapsed_uri_is_refused(tmp_path):
    assert Settings(warehouse=tmp_path / "w").warehouse == str(tmp_path / "w")
    assert Warehouse.from_settings(Settings(warehouse="file:///abs/w")).root == Path("/abs/w")
    message = r"TECHNIC_WAREHOUSE \(warehouse\): 's3:/bucket/w' lacks a '/' after 's3:'.*write s3://bucket/w"
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({}, warehouse=Path("s3://bucket/w"))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TECHNIC_SIM_SYMBOLS": "0"}, "TECHNIC_SIM_SYMBOLS (sim_symbols): must be ≥ 1"),
        ({"TECHNIC_SIM_SYMBOLS": "20001"}, "TECHNIC_SIM_SYMBOLS (sim_symbols): must be ≤ 20000"),
        ({"TECHNIC_SIM_SEED": "seven"}, "TECHNIC_SIM_SEED (sim_seed): must be a whole number"),
        ({"TECHNIC_FILES_STRICT": "maybe"}, "TECHNIC_FILES_STRICT (files_strict): must be true or false"),
        (
            {"POLYGON_CALLS_PER_MINUTE": "-1"},
            "TECHNIC_POLYGON_CALLS_PER_MINUTE or POLYGON_CALLS_PER_MINUTE (polygon_calls_per_minute): must be ≥ 0",
        ),
        (
            {"TECHNIC_POLYGON_DETAILS_REFRESH_DAYS": "0", "TECHNIC_SIM_SEED": "-1"},
            "TECHNIC_SIM_SEED (sim_seed): must be ≥ 0; "
            "TECHNIC_POLYGON_DETAILS_REFRESH_DAYS (polygon_details_refresh_days): must be ≥ 1",
        ),
    ],
)
def test_invalid_values_name_the_variable(env, message):
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(env)
    assert str(raised.value) == f"invalid Settings: {message}"


def test_settings_are_hashable_for_source_caching():
    assert hash(Settings.from_env({})) == hash(Settings.from_env({}))
    keyed = {"POLYGON_API_KEY": "pk", "TECHNIC_API_KEYS": "a,b"}
    assert hash(Settings.from_env(keyed)) == hash(Settings.from_env(keyed))
