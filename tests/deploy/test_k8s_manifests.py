"""Kubernetes manifests: schema-valid, complete kustomization, safe pods, consistent wiring."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from agent_runtime.settings import ServerSettings, load_settings
from tests.deploy.deploy_files import K8S, load_yaml_documents, manifest_files, only

Resources = dict[tuple[str, str], dict[str, Any]]

# The oldest Kubernetes we claim to support and the newest schemas kubernetes-validate ships.
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.name)
def test_manifest_is_valid_against_the_kubernetes_schema(path: Path, version: str) -> None:
    for doc in load_yaml_documents(path):
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{path.name}: {doc['kind']} {where}: {exc.message}")


def test_kustomization_lists_every_manifest_except_examples(kustomization: dict[str, Any]) -> None:
    listed = kustomization["resources"]
    for name in listed:
        assert (K8S / name).is_file(), f"kustomization.yaml lists {name}, which does not exist"
    expected = [p.name for p in manifest_files() if ".example." not in p.name]
    assert sorted(listed) == sorted(expected)


def test_example_secret_is_not_applied_and_holds_only_fake_values(resources: Resources) -> None:
    secret = only(resources, "Secret")
    for key, value in secret["stringData"].items():
        assert "FAKE" in value, f"secret.example.yaml: {key} must be an obvious placeholder"


def _pod(resources: Resources, kind: str) -> dict[str, Any]:
    pod = only(resources, kind)["spec"]["template"]["spec"]
    assert isinstance(pod, dict), f"{kind}: spec.template.spec is not a mapping"
    return pod


def _container(pod: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod["containers"]
    assert isinstance(container, dict), "a pod's container is not a mapping"
    return container


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in container["env"]}


def test_probes_check_liveness_on_healthz_and_readiness_on_readyz(resources: Resources) -> None:
    container = _container(_pod(resources, "Deployment"))
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_pods_run_non_root_with_a_read_only_root_and_no_capabilities(resources: Resources, kind: str) -> None:
    pod = _pod(resources, kind)
    container = _container(pod)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert "limits" in container["resources"]
    assert "requests" in container["resources"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert mounts["/app/config"] == "config"
    if kind == "Deployment":
        assert "emptyDir" in volumes[mounts["/app/data"]]


def test_grace_period_covers_the_prestop_sleep_and_the_drain(resources: Resources) -> None:
    pod = _pod(resources, "Deployment")
    prestop = _container(pod)["lifecycle"]["preStop"]["exec"]["command"]
    assert prestop[0] == "sleep"
    config = yaml.safe_load(only(resources, "ConfigMap")["data"]["config.yaml"])
    drain = config.get("server", {}).get("shutdown_grace_seconds", ServerSettings().shutdown_grace_seconds)
    # Some headroom after the drain to release leases and close MCP servers.
    assert pod["terminationGracePeriodSeconds"] >= int(prestop[1]) + drain + 10


def test_deployment_and_job_read_config_from_the_configmap_and_secrets_from_the_secret(
    resources: Resources,
) -> None:
    configmap = only(resources, "ConfigMap")
    secret_keys = set(only(resources, "Secret")["stringData"])
    for kind in ("Deployment", "Job"):
        pod = _pod(resources, kind)
        env = _env(_container(pod))
        mount = next(m for m in _container(pod)["volumeMounts"] if m["name"] == "config")
        config_volume = next(v for v in pod["volumes"] if v["name"] == "config")
        assert config_volume["configMap"]["name"] == configmap["metadata"]["name"]
        assert env["AGENT_RUNTIME_CONFIG"]["value"] == f"{mount['mountPath']}/config.yaml"
        database = env["AGENT_RUNTIME_DATABASE__URL"]["valueFrom"]["secretKeyRef"]
        assert database["name"] == only(resources, "Secret")["metadata"]["name"]
        assert database["key"] in secret_keys
    assert _container(_pod(resources, "Job"))["args"] == ["migrate"]


def test_configmap_config_and_registry_load_with_the_service_loaders(
    resources: Resources, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent_runtime.tools.registry import load_registry

    for name, text in only(resources, "ConfigMap")["data"].items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "AGENT_RUNTIME_CONFIG"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AGENT_RUNTIME_DATABASE__URL", "postgresql+asyncpg://u:p@db:5432/agent_runtime")

    settings = load_settings(tmp_path / "config.yaml")

    assert settings.tools.registry_path == tmp_path / "tool_registry.yaml"
    # The ConfigMap mount is read-only: workspaces must go to the data volume.
    assert str(settings.tools.workspace_root).startswith("/app/data/")
    assert not settings.database.should_auto_migrate, "PostgreSQL is migrated by the Job"
    registry = load_registry(settings.tools.registry_path)
    for server in registry.enabled():
        for arg in getattr(server.config, "args", []):
            assert "${REGISTRY_DIR}" not in arg, "REGISTRY_DIR is the ConfigMap mount, not /app"


def test_service_pdb_and_hpa_target_the_deployment_pods_only(resources: Resources) -> None:
    deployment = only(resources, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    job_labels = only(resources, "Job")["spec"]["template"]["metadata"]["labels"]

    def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in selector.items())

    service_selector = only(resources, "Service")["spec"]["selector"]
    assert selects(service_selector, pod_labels)
    assert not selects(service_selector, job_labels)
    assert (
        deployment["spec"]["selector"]["matchLabels"]
        == only(resources, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"]
    )
    hpa = only(resources, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] <= deployment["spec"]["replicas"] <= hpa["spec"]["maxReplicas"]
    assert deployment["spec"]["replicas"] == 3
