"""The deploy/k8s files: Kubernetes manifests valid offline, non-root everywhere, pinned images, chart keys real.

No cluster, no network and no chart: the manifests are checked against the Kubernetes schemas bundled with
kubernetes-validate, and the Helm values against the key paths of the official dagster/dagster chart listed below.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"

#: The Kubernetes release the manifests are validated against (schemas bundled with kubernetes-validate).
KUBERNETES_VERSION = "1.32.0"

#: Files in deploy/k8s that are not Kubernetes manifests: Helm values for the chart, and a Dagster instance.
CHART_VALUES = ("values.yaml", "values-object-store.yaml")
NOT_MANIFESTS = {*CHART_VALUES, "dagster.yaml"}

#: The image's user (deploy/k8s/Dockerfile, `ARG UID`); every securityContext runs as it.
UID = 10001

#: Keys whose values are Kubernetes objects (PodSecurityContext, SecurityContext, Volume, VolumeMount, and the
#: chart's ConfigMap/Secret env sources, `{name: ...}`): validated against the Kubernetes schema instead of listed.
KUBERNETES_TYPED = {"podSecurityContext", "securityContext", "volumes", "volumeMounts", "envConfigMaps", "envSecrets"}

#: Every key path the values files use, each checked against the official chart's values.yaml and its pydantic
#: schema (helm/dagster/schema, which generates values.schema.json) in github.com/dagster-io/dagster. `[]` is an
#: item of a list. A typo, or a key the chart lacks (which Helm silently ignores), is a path not in this set.
CHART_KEY_PATHS = {
    "dagsterWebserver.image.repository",
    "dagsterWebserver.image.tag",
    "dagsterWebserver.image.pullPolicy",
    "dagsterWebserver.podSecurityContext",
    "dagsterWebserver.securityContext",
    "dagsterDaemon.image.repository",
    "dagsterDaemon.image.tag",
    "dagsterDaemon.image.pullPolicy",
    "dagsterDaemon.runCoordinator.enabled",
    "dagsterDaemon.runCoordinator.type",
    "dagsterDaemon.podSecurityContext",
    "dagsterDaemon.securityContext",
    "dagster-user-deployments.enabled",
    "dagster-user-deployments.deployments[].name",
    "dagster-user-deployments.deployments[].image.repository",
    "dagster-user-deployments.deployments[].image.tag",
    "dagster-user-deployments.deployments[].image.pullPolicy",
    "dagster-user-deployments.deployments[].dagsterApiGrpcArgs",
    "dagster-user-deployments.deployments[].port",
    "dagster-user-deployments.deployments[].envConfigMaps",
    "dagster-user-deployments.deployments[].envSecrets",
    "dagster-user-deployments.deployments[].podSecurityContext",
    "dagster-user-deployments.deployments[].securityContext",
    "dagster-user-deployments.deployments[].volumes",
    "dagster-user-deployments.deployments[].volumeMounts",
    "runLauncher.type",
    "runLauncher.config.k8sRunLauncher.envConfigMaps",
    "runLauncher.config.k8sRunLauncher.envSecrets",
    "runLauncher.config.k8sRunLauncher.securityContext",
    "runLauncher.config.k8sRunLauncher.volumes",
    "runLauncher.config.k8sRunLauncher.volumeMounts",
    # The instance's concurrency settings: the chart's top-level `concurrency`, rendered only when enabled.
    "concurrency.enabled",
    "concurrency.runs.maxConcurrentRuns",
    "concurrency.pools.defaultLimit",
    "postgresql.enabled",
    "postgresql.postgresqlHost",
    "postgresql.postgresqlUsername",
    "postgresql.postgresqlDatabase",
    "postgresql.postgresqlScheme",
    "postgresql.service.port",
    "generatePostgresqlPasswordSecret",
    "telemetry.enabled",
}

#: A pinned image reference: a tag other than `latest`, optionally followed by a digest.
PINNED_IMAGE = re.compile(
    r"^(?P<repository>[^:@\s]+(?::\d+)?(?:/[^:@\s]+)*):(?P<tag>[\w][\w.-]*)(?:@sha256:[0-9a-f]{64})?$"
)


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _manifests() -> list[Path]:
    return sorted(path for path in K8S.glob("*.yaml") if path.name not in NOT_MANIFESTS)


def _values(name: str) -> dict[str, Any]:
    (values,) = _documents(K8S / name)
    return values


def _key_paths(node: Any, prefix: str = "") -> Iterator[str]:
    """Each path from the root to a scalar, to a list of scalars, or to a Kubernetes-typed value."""
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if key in KUBERNETES_TYPED or not isinstance(value, dict | list):
                yield path
            else:
                yield from _key_paths(value, path)
    elif isinstance(node, list) and any(isinstance(item, dict) for item in node):
        for item in node:
            yield from _key_paths(item, f"{prefix}[]")
    else:
        yield prefix


def _pod_specs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    if doc["kind"] == "Pod":
        return [doc["spec"]]
    template = doc.get("spec", {}).get("template")
    return [template["spec"]] if template else []


def _pin_of(package: str) -> str:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (pin,) = (dep.split("==")[1] for dep in dependencies if dep.startswith(f"{package}=="))
    return pin


def _assert_pinned(image: str, where: str) -> re.Match[str]:
    match = PINNED_IMAGE.match(image)
    assert match, f"{where}: image {image!r} has no tag (or is not a valid reference)"
    assert match["tag"] != "latest", f"{where}: image {image!r} uses the latest tag"
    return match


def _assert_non_root_container(context: dict[str, Any] | None, where: str, *, read_only: bool) -> None:
    assert context, f"{where}: no securityContext"
    assert context.get("runAsNonRoot") is True, f"{where}: runAsNonRoot is not true"
    assert context.get("runAsUser") == UID, f"{where}: runAsUser is not {UID}"
    assert context.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation is not false"
    assert "ALL" in context.get("capabilities", {}).get("drop", []), f"{where}: capabilities do not drop ALL"
    if read_only:
        assert context.get("readOnlyRootFilesystem") is True, f"{where}: root filesystem is not read-only"


def _assert_non_root_pod(context: dict[str, Any] | None, where: str) -> None:
    assert context, f"{where}: no pod securityContext"
    assert context.get("runAsNonRoot") is True, f"{where}: runAsNonRoot is not true"
    assert context.get("runAsUser") == UID, f"{where}: runAsUser is not {UID}"


# ---------------------------------------------------------------- our manifests


def test_there_are_manifests() -> None:
    assert {path.name for path in _manifests()} >= {"api.yaml", "config.yaml", "warehouse-pvc.yaml"}


@pytest.mark.parametrize("path", _manifests(), ids=lambda path: path.name)
def test_manifest_is_valid_kubernetes(path: Path) -> None:
    docs = _documents(path)
    assert docs, f"{path.name} holds no document"
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_strict_validation_rejects_a_field_kubernetes_lacks() -> None:
    """The validation above would catch a misspelt field, not only a wrong type."""
    deployment = next(doc for doc in _documents(K8S / "api.yaml") if doc["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsNonroot"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("path", _manifests(), ids=lambda path: path.name)
def test_manifest_pods_run_as_non_root_with_pinned_images(path: Path) -> None:
    for doc in _documents(path):
        for spec in _pod_specs(doc):
            name = f"{path.name}: {doc['kind']} {doc['metadata']['name']}"
            _assert_non_root_pod(spec.get("securityContext"), name)
            for container in [*spec.get("initContainers", []), *spec["containers"]]:
                where = f"{name}, container {container['name']}"
                _assert_pinned(container["image"], where)
                _assert_non_root_container(container.get("securityContext"), where, read_only=True)


def test_api_is_a_deployment_with_a_service_running_technic_serve() -> None:
    docs = {doc["kind"]: doc for doc in _documents(K8S / "api.yaml")}
    assert set(docs) == {"Deployment", "Service"}
    (container,) = docs["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["command"][:2] == ["technic", "serve"]
    selector = docs["Deployment"]["spec"]["selector"]["matchLabels"]
    assert docs["Service"]["spec"]["selector"] == selector
    assert selector.items() <= docs["Deployment"]["spec"]["template"]["metadata"]["labels"].items()


def test_technic_settings_are_ones_technic_reads() -> None:
    from api.settings import ApiSettings
    from technic_core.config import Settings

    (config,) = _documents(K8S / "config.yaml")
    known = {
        name for model in (Settings, ApiSettings) for field in model.model_fields for name in model.env_names(field)
    }
    unknown = sorted(key for key in config["data"] if key.startswith("TECHNIC_") and key not in known)
    assert not unknown, f"config.yaml sets variables Technic does not read: {unknown}"


# ---------------------------------------------------------------- chart values


@pytest.mark.parametrize("name", CHART_VALUES)
def test_values_use_only_keys_the_chart_has(name: str) -> None:
    unknown = sorted(set(_key_paths(_values(name))) - CHART_KEY_PATHS)
    assert not unknown, f"{name} uses key paths the dagster chart does not have (or that are not listed): {unknown}"


def test_every_listed_chart_key_is_used() -> None:
    used = {path for name in CHART_VALUES for path in _key_paths(_values(name))}
    assert sorted(CHART_KEY_PATHS - used) == []


@pytest.mark.parametrize("name", CHART_VALUES)
def test_values_kubernetes_objects_are_valid(name: str) -> None:
    """Each component's security contexts, volumes, mounts and env sources, as one Pod validated strictly."""
    values = _values(name)
    components = [
        values.get("dagsterWebserver", {}),
        values.get("dagsterDaemon", {}),
        *values.get("dagster-user-deployments", {}).get("deployments", []),
        values.get("runLauncher", {}).get("config", {}).get("k8sRunLauncher", {}),
    ]
    for component in components:
        container: dict[str, Any] = {"name": "c", "image": "example/image:1"}
        for key in ("securityContext", "volumeMounts"):
            if key in component:
                container[key] = component[key]
        env_from = [{"configMapRef": source} for source in component.get("envConfigMaps", [])]
        env_from += [{"secretRef": source} for source in component.get("envSecrets", [])]
        if env_from:
            container["envFrom"] = env_from
        spec: dict[str, Any] = {"containers": [container], "volumes": component.get("volumes", [])}
        if "podSecurityContext" in component:
            spec["securityContext"] = component["podSecurityContext"]
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "values"}, "spec": spec}
        kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("name", CHART_VALUES)
def test_values_run_everything_as_non_root(name: str) -> None:
    values = _values(name)
    for component in ("dagsterWebserver", "dagsterDaemon"):
        if component in values:
            _assert_non_root_pod(values[component]["podSecurityContext"], f"{name}: {component}")
            _assert_non_root_container(values[component]["securityContext"], f"{name}: {component}", read_only=False)
    for deployment in values["dagster-user-deployments"]["deployments"]:
        where = f"{name}: user deployment {deployment['name']}"
        _assert_non_root_pod(deployment["podSecurityContext"], where)
        _assert_non_root_container(deployment["securityContext"], where, read_only=True)
    launcher = values.get("runLauncher", {}).get("config", {}).get("k8sRunLauncher", {})
    # values.yaml sets the run pods' securityContext; the overlay, restating only their volumes, inherits it.
    if "securityContext" in launcher or name == "values.yaml":
        _assert_non_root_container(launcher.get("securityContext"), f"{name}: run pods", read_only=False)


@pytest.mark.parametrize("name", CHART_VALUES)
def test_values_pin_every_image(name: str) -> None:
    values = _values(name)
    for component in ("dagsterWebserver", "dagsterDaemon"):
        if component in values:
            image = values[component]["image"]
            _assert_pinned(f"{image['repository']}:{image['tag']}", f"{name}: {component}")
            assert image["tag"] == _pin_of("dagster"), (
                f"{name}: {component} runs another dagster than pyproject.toml pins"
            )
    for deployment in values["dagster-user-deployments"]["deployments"]:
        image = deployment["image"]
        _assert_pinned(f"{image['repository']}:{image['tag']}", f"{name}: user deployment {deployment['name']}")


def test_api_runs_the_user_code_image() -> None:
    (deployment,) = _values("values.yaml")["dagster-user-deployments"]["deployments"]
    api = next(doc for doc in _documents(K8S / "api.yaml") if doc["kind"] == "Deployment")
    (container,) = api["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"{deployment['image']['repository']}:{deployment['image']['tag']}"


# ---------------------------------------------------------------- instance and image


def test_instance_config_is_valid_and_matches_the_values() -> None:
    from dagster._config import validate_config
    from dagster._core.instance.config import dagster_instance_config_schema

    (instance,) = _documents(K8S / "dagster.yaml")
    result = validate_config(dagster_instance_config_schema(), instance)
    assert result.success, result.errors
    concurrency = _values("values.yaml")["concurrency"]
    assert concurrency["enabled"] is True
    assert instance["concurrency"]["runs"]["max_concurrent_runs"] == concurrency["runs"]["maxConcurrentRuns"]
    assert instance["concurrency"]["pools"]["default_limit"] == concurrency["pools"]["defaultLimit"] == 1


def test_dockerfile_pins_its_base_and_runs_as_the_non_root_user() -> None:
    text = (K8S / "Dockerfile").read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.MULTILINE))
    (base,) = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    base = re.sub(r"\$\{(\w+)\}", lambda match: args[match[1]], base)
    match = _assert_pinned(base, "Dockerfile FROM")
    assert re.fullmatch(r"\d+\.\d+\.\d+-.+", match["tag"]), f"Dockerfile FROM {base}: not a patch release"
    assert int(args["UID"]) == UID
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users, "Dockerfile never switches away from root"
    assert re.sub(r"\$\{(\w+)\}", lambda match: args[match[1]], users[-1]) == f"{UID}:{UID}"
    (k8s_pin,) = re.findall(r'"dagster-k8s==([\d.]+)"', text)
    assert k8s_pin == _pin_of("dagster-postgres"), "dagster-k8s is released in lockstep with dagster-postgres"
