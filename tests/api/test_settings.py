"""`ApiSettings`: the `TECHNIC_API_*` variables, `.env`, and errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.settings import ApiSettings
from technic_core.config import Settings
from technic_core.errors import ConfigError

#: The variables the API read before `ApiSettings` became a pydantic-settings class (README lists them).
PREVIOUS_NAMES = {
    "reads_require_key": "TECHNIC_API_READS_REQUIRE_KEY",
    "max_streams_per_key": "TECHNIC_API_MAX_STREAMS_PER_KEY",
    "max_scans_per_key": "TECHNIC_API_MAX_SCANS_PER_KEY",
    "scan_workers": "TECHNIC_API_SCAN_WORKERS",
    "retained_scans": "TECHNIC_API_RETAINED_SCANS",
    "subscriber_queue": "TECHNIC_API_SUBSCRIBER_QUEUE",
    "heartbeat_s": "TECHNIC_API_HEARTBEAT_S",
    "poll_interval_s": "TECHNIC_API_POLL_INTERVAL_S",
    "max_tailed_partitions": "TECHNIC_API_MAX_TAILED_PARTITIONS",
    "predictor_ttl_s": "TECHNIC_API_PREDICTOR_TTL_S",
}


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No API or Settings variable in the process, and a working directory without `.env`."""
    for model in (ApiSettings, Settings):
        for field in model.model_fields:
            for name in model.env_names(field):
                monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_every_field_keeps_its_variable_name():
    assert {field: ApiSettings.env_names(field) for field in ApiSettings.model_fields} == {
        field: (name,) for field, name in PREVIOUS_NAMES.items()
    }
    settings = ApiSettings.from_env({"TECHNIC_API_MAX_STREAMS_PER_KEY": "7", "TECHNIC_API_READS_REQUIRE_KEY": "true"})
    assert (settings.max_streams_per_key, settings.reads_require_key) == (7, True)
    assert ApiSettings.from_env({}, scan_workers=4).scan_workers == 4


def test_one_dotenv_serves_the_api_and_the_core_settings(clean_environment, monkeypatch):
    (clean_environment / ".env").write_text(
        "TECHNIC_API_KEYS=alpha,beta\nTECHNIC_API_SUBSCRIBER_QUEUE=64\nTECHNIC_SIM_SYMBOLS=300\nDAGSTER_HOME=/tmp/d\n"
    )
    monkeypatch.setenv("TECHNIC_API_HEARTBEAT_S", "2.5")
    api = ApiSettings.from_env()
    assert (api.subscriber_queue, api.heartbeat_s, api.scan_workers) == (64, 2.5, 2)
    core = Settings.from_env()
    assert [key.get_secret_value() for key in core.api_keys] == ["alpha", "beta"] and core.sim_symbols == 300


def test_without_dotenv_the_defaults_apply(clean_environment):
    assert ApiSettings.from_env() == ApiSettings()
    assert ApiSettings.from_env().max_streams_per_key == 100


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"TECHNIC_API_MAX_STREAMS_PER_KEY": "0"},
            "TECHNIC_API_MAX_STREAMS_PER_KEY (max_streams_per_key): must be ≥ 1",
        ),
        ({"TECHNIC_API_SCAN_WORKERS": "65"}, "TECHNIC_API_SCAN_WORKERS (scan_workers): must be ≤ 64"),
        ({"TECHNIC_API_HEARTBEAT_S": "0"}, "TECHNIC_API_HEARTBEAT_S (heartbeat_s): must be > 0"),
        ({"TECHNIC_API_POLL_INTERVAL_S": "fast"}, "TECHNIC_API_POLL_INTERVAL_S (poll_interval_s): must be a number"),
        (
            {"TECHNIC_API_READS_REQUIRE_KEY": "sure"},
            "TECHNIC_API_READS_REQUIRE_KEY (reads_require_key): must be true or false",
        ),
    ],
)
def test_invalid_values_name_the_variable(env, message):
    with pytest.raises(ConfigError) as raised:
        ApiSettings.from_env(env)
    assert str(raised.value) == f"invalid ApiSettings: {message}"


def test_process_environment_errors_are_config_errors_too(clean_environment, monkeypatch):
    monkeypatch.setenv("TECHNIC_API_MAX_TAILED_PARTITIONS", "33")
    message = r"TECHNIC_API_MAX_TAILED_PARTITIONS \(max_tailed_partitions\): must be ≤ 32"
    with pytest.raises(ConfigError, match=message):
        ApiSettings.from_env()
