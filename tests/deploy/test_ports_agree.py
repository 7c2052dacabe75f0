"""One port everywhere: Dockerfile CMD/EXPOSE/HEALTHCHECK, compose, Deployment, probes, Service."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.deploy.deploy_files import Dockerfile, cli_port, only

Resources = dict[tuple[str, str], dict[str, Any]]


@pytest.fixture
def port(dockerfile: Dockerfile) -> int:
    """The port the image's CMD passes to ``agent-runtime serve``: everything else must agree."""
    return cli_port(dockerfile.exec_form("CMD"))


def test_dockerfile_exposes_and_healthchecks_the_cmd_port(dockerfile: Dockerfile, port: int) -> None:
    assert [int(p.split("/")[0]) for p in dockerfile.last("EXPOSE").args.split()] == [port]
    assert re.search(rf"127\.0\.0\.1:{port}/healthz", dockerfile.last("HEALTHCHECK").args)


def test_compose_replicas_serve_and_publish_the_cmd_port(compose: dict[str, Any], port: int) -> None:
    published = []
    for name in ("app", "app-2"):
        service = compose["services"][name]
        assert cli_port(service["command"]) == port
        for mapping in service["ports"]:
            host_side, container_side = str(mapping).rsplit(":", 1)
            assert int(container_side.split("/")[0]) == port
            published.append(host_side)
    assert len(set(published)) == len(published), "two replicas cannot publish the same host port"


def test_deployment_ports_probes_and_service_agree(resources: Resources, port: int) -> None:
    deployment = only(resources, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}

    def resolve(value: int | str) -> int:
        return named[value] if isinstance(value, str) else value

    assert cli_port(container["args"]) == port
    assert list(named.values()) == [port]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert resolve(container[probe]["httpGet"]["port"]) == port, probe
    (service_port,) = only(resources, "Service")["spec"]["ports"]
    assert resolve(service_port["targetPort"]) == port
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == port
    assert annotations["prometheus.io/path"] == "/metrics"


def test_deployment_args_match_the_image_cmd(resources: Resources, dockerfile: Dockerfile) -> None:
    (container,) = only(resources, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["args"] == dockerfile.exec_form("CMD")
    assert "command" not in container, "keep the image ENTRYPOINT (tini + agent-runtime)"
