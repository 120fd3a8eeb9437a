"""Registry: versions are whole or invisible, the champion pointer switches atomically, damage falls back."""

from __future__ import annotations

import json
import logging
import re
import uuid

import pytest

from technic_core.errors import ConfigError
from technic_core.ml.registry import ModelRegistry


def _store_versions(registry: ModelRegistry, payloads: list[bytes]) -> list[str]:
    versions = []
    for payload in payloads:
        version = registry.create_version("demo", {"model.bin": payload}, {"kind": "test"}, {"score": len(payload)})
        registry.promote("demo", version, "test")
        versions.append(version)
    return versions


def _loader(registry: ModelRegistry):
    return lambda version: registry.read_file("demo", version, "model.bin").decode()


def test_versions_are_numbered_and_kept_and_the_pointer_remembers_previous_champions(tmp_path):
    registry = ModelRegistry(tmp_path)
    assert _store_versions(registry, [b"one", b"two", b"three"]) == ["v0001", "v0002", "v0003"]
    assert registry.versions("demo") == ["v0001", "v0002", "v0003"]
    pointer = json.loads((tmp_path / "models" / "demo" / "champion.json").read_text())
    assert pointer["version"] == "v0003" and pointer["previous"] == ["v0002", "v0001"]
    loaded = registry.load("demo", _loader(registry))
    assert loaded.model == "three" and loaded.healthy and not loaded.fell_back
    assert registry.metrics("demo", "v0002") == {"score": 3}


def test_on_an_object_store_versions_never_collide_and_fall_back_like_local_ones():
    root = f"memory://registry-{uuid.uuid4().hex}/warehouse"
    registry, rival = ModelRegistry(root), ModelRegistry(root)  # two trainings in two processes
    first = _store_versions(registry, [b"one"])[0]
    # both claim the next number before either has written anything: each still gets a directory of its own
    claims = [registry._claim_version("demo").name, rival._claim_version("demo").name]
    assert all(claim.startswith("v0002-") for claim in claims) and claims[0] != claims[1]
    second = registry.create_version("demo", {"model.bin": b"two"}, {}, {})
    third = rival.create_version("demo", {"model.bin": b"three"}, {}, {})
    assert re.fullmatch(r"v0001-[0-9a-f]{8}", first) and second.startswith("v0002-") and third.startswith("v0003-")
    assert registry.versions("demo") == [first, second, third]
    rival.promote("demo", third, "test")
    assert registry.load("demo", _loader(registry)).model == "three"
    (registry.root / "demo" / third / "model.bin").write_bytes(b"thr")
    loaded = registry.load("demo", _loader(registry))
    assert loaded.model == "one" and loaded.fell_back, "a damaged champion falls back on a bucket too"
    assert registry.pointer_fingerprint("demo") is not None


def test_a_version_without_manifest_is_an_interrupted_write_and_invisible(tmp_path):
    registry = ModelRegistry(tmp_path)
    _store_versions(registry, [b"one"])
    (tmp_path / "models" / "demo" / "v0002").mkdir()
    assert registry.versions("demo") == ["v0001"]
    with pytest.raises(ConfigError, match="not a complete version"):
        registry.promote("demo", "v0002", "test")
    assert registry.create_version("demo", {"model.bin": b"x"}, {}, {}) == "v0003"


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_a_damaged_champion_falls_back_to_the_previous_one_with_a_warning(tmp_path, caplog, damage):
    registry = ModelRegistry(tmp_path)
    _store_versions(registry, [b"one", b"two"])
    model_file = tmp_path / "models" / "demo" / "v0002" / "model.bin"
    if damage == "corrupt":
        model_file.write_bytes(b"tw")
    else:
        model_file.unlink()
    with caplog.at_level(logging.WARNING, logger="technic_core.ml.registry"):
        loaded = registry.load("demo", _loader(registry))
    assert loaded.model == "one" and loaded.version == "v0001" and loaded.champion == "v0002"
    assert loaded.fell_back and not loaded.healthy
    assert "falling back to v0001" in loaded.status() and "v0002" in loaded.status()
    assert any("v0002 could not be loaded" in record.message for record in caplog.records)


def test_nothing_loadable_is_reported_not_raised(tmp_path):
    registry = ModelRegistry(tmp_path)
    _store_versions(registry, [b"one"])
    (tmp_path / "models" / "demo" / "v0001" / "model.bin").write_bytes(b"garbage")
    loaded = registry.load("demo", _loader(registry))
    assert not loaded.available and not loaded.healthy
    assert "no loadable version" in loaded.status()


def test_an_unreadable_pointer_serves_the_newest_version(tmp_path):
    registry = ModelRegistry(tmp_path)
    _store_versions(registry, [b"one", b"two"])
    (tmp_path / "models" / "demo" / "champion.json").write_text("{not json")
    loaded = registry.load("demo", _loader(registry))
    assert loaded.model == "two" and loaded.fell_back and "unreadable" in loaded.status()


def test_no_champion_yet_is_healthy_and_empty(tmp_path):
    loaded = ModelRegistry(tmp_path).load("demo", lambda version: version)
    assert loaded.healthy and not loaded.available and loaded.status() == "demo: no champion yet"


def test_model_names_must_be_identifiers(tmp_path):
    with pytest.raises(ConfigError, match="lower-case identifier"):
        ModelRegistry(tmp_path).versions("../escape")
