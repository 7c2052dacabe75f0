"""docker-compose.yml: valid for docker-compose, migrations before the app, read-only containers."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest

from agent_runtime.settings import ServerSettings
from tests.deploy.deploy_files import ROOT

APP_SERVICES = ("app", "app-2")


def test_docker_compose_config_accepts_the_file() -> None:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (scripts/ci-deploy-deps.sh installs Debian's 1.29)")
    result = subprocess.run(
        [binary, "-f", "docker-compose.yml", "config", "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_database_reports_health_with_pg_isready(compose: dict[str, Any]) -> None:
    db = compose["services"]["db"]
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert any(volume.endswith(":/var/lib/postgresql/data") for volume in db["volumes"])


def test_migrate_runs_once_after_the_database_is_healthy(compose: dict[str, Any]) -> None:
    migrate = compose["services"]["migrate"]
    assert migrate["command"] == ["migrate"]
    assert migrate["depends_on"]["db"]["condition"] == "service_healthy"
    assert migrate["restart"] == "no"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_replicas_wait_for_migrations_and_share_postgres(compose: dict[str, Any], name: str) -> None:
    app = compose["services"][name]
    assert app["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert app["depends_on"]["db"]["condition"] == "service_healthy"
    assert app["environment"]["AGENT_RUNTIME_DATABASE__URL"].startswith("postgresql+asyncpg://")
    assert "@db:5432/" in app["environment"]["AGENT_RUNTIME_DATABASE__URL"]


@pytest.mark.parametrize("name", [*APP_SERVICES, "migrate"])
def test_containers_have_a_read_only_root_and_a_tmpfs(compose: dict[str, Any], name: str) -> None:
    service = compose["services"][name]
    assert service["read_only"] is True
    assert any(entry.split(":")[0] == "/tmp" for entry in service["tmpfs"])
    assert service["cap_drop"] == ["ALL"]
    assert service["image"] == compose["services"]["app"]["image"]


def test_each_replica_has_its_own_data_volume(compose: dict[str, Any]) -> None:
    volumes = [compose["services"][name]["volumes"] for name in APP_SERVICES]
    for mounts in volumes:
        assert any(m.endswith(":/app/data") for m in mounts)
    assert volumes[0] != volumes[1]


def test_stop_grace_period_covers_the_drain(compose: dict[str, Any]) -> None:
    drain = ServerSettings().shutdown_grace_seconds
    for name in APP_SERVICES:
        period = compose["services"][name]["stop_grace_period"]
        assert period.endswith("s")
        assert int(period[:-1]) > drain


def test_env_example_holds_no_real_secrets() -> None:
    values = {}
    for line in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    assert values["OPENAI_API_KEY"] == ""
    assert values["ANTHROPIC_API_KEY"] == ""
    assert "change-me" in values["POSTGRES_PASSWORD"]
