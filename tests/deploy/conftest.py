"""Fixtures: the deployment files, parsed once per session."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.deploy.deploy_files import (
    K8S,
    ROOT,
    Dockerfile,
    load_yaml_documents,
    manifest_files,
    parse_dockerfile,
)


@pytest.fixture(scope="session")
def dockerfile() -> Dockerfile:
    return parse_dockerfile(ROOT / "Dockerfile")


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    with (ROOT / "docker-compose.yml").open(encoding="utf-8") as stream:
        data = yaml.safe_load(stream)
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="session")
def kustomization() -> dict[str, Any]:
    (doc,) = load_yaml_documents(K8S / "kustomization.yaml")
    return doc


@pytest.fixture(scope="session")
def resources() -> dict[tuple[str, str], dict[str, Any]]:
    """Every manifest in k8s/ by (kind, name)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in manifest_files():
        for doc in load_yaml_documents(path):
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in found, f"{path.name}: {key} defined twice"
            found[key] = doc
    return found
