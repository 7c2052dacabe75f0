"""Configuration: file + environment, provider resolution, and errors that name file, key and problem."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import structlog

from agent_runtime.errors import ConfigError
from agent_runtime.runtime import build_runtime
from agent_runtime.settings import Settings, load_settings
from tests.support.harness import REGISTRY, make_settings

CLI = Path(sys.executable).parent / "agent-runtime"


def test_environment_overrides_the_file_and_relative_paths_follow_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("server: {port: 9000, log_level: debug}\ntools: {registry_path: reg.yaml}\n")
    monkeypatch.setenv("AGENT_RUNTIME_SERVER__PORT", "9100")
    settings = load_settings(config)
    assert settings.server.port == 9100 and settings.server.log_level == "debug"
    assert settings.tools.registry_path == tmp_path / "reg.yaml"
    monkeypatch.setenv("AGENT_RUNTIME_CONFIG", str(config))
    assert load_settings().server.port == 9100


def test_precedence_is_arguments_then_environment_then_dotenv_then_the_file_then_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(Settings.model_config, "env_file", ".env")  # the default (conftest turns it off)
    (tmp_path / "config.yaml").write_text(
        "server: {port: 9001, host: 127.0.0.2, log_level: debug, sse_ping_seconds: 7}\n"
        "limits: {max_steps_per_plan: 3}\n"
    )
    (tmp_path / ".env").write_text(
        "# docker compose's variables are not settings: ignored\n"
        "POSTGRES_PASSWORD=change-me\n"
        "AGENT_RUNTIME_SERVER__PORT=9002\n"
        "AGENT_RUNTIME_SERVER__HOST=127.0.0.3\n"
        "AGENT_RUNTIME_SERVER__LOG_LEVEL=warning\n"
    )
    monkeypatch.setenv("AGENT_RUNTIME_SERVER__PORT", "9003")
    monkeypatch.setenv("AGENT_RUNTIME_SERVER__HOST", "127.0.0.4")
    settings = load_settings(tmp_path / "config.yaml", server={"port": 9004})
    assert settings.server.port == 9004  # argument over environment
    assert settings.server.host == "127.0.0.4"  # environment over .env
    assert settings.server.log_level == "warning"  # .env over the file
    assert settings.server.sse_ping_seconds == 7 and settings.limits.max_steps_per_plan == 3  # the file
    assert settings.limits.max_turns_per_step == 10  # default


def test_dotenv_supplies_provider_keys_below_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(Settings.model_config, "env_file", ".env")
    (tmp_path / ".env").write_text("ANTHROPIC_API_KEY=from-dotenv\nANTHROPIC_BASE_URL=http://127.0.0.1:9/\n")
    llm = load_settings().llm.planner.resolved()
    assert (llm.provider, llm.base_url) == ("anthropic", "http://127.0.0.1:9/")
    assert llm.api_key is not None and llm.api_key.get_secret_value() == "from-dotenv"
    monkeypatch.setenv("ANTHROPIC_API_KEY", "from-environment")
    llm = load_settings().llm.executor.resolved()
    assert llm.api_key is not None and llm.api_key.get_secret_value() == "from-environment"
    assert "from-environment" not in repr(load_settings()) and "ANTHROPIC" not in str(load_settings().model_dump())


def test_a_dotenv_variable_with_our_prefix_that_names_no_setting_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(Settings.model_config, "env_file", ".env")
    (tmp_path / ".env").write_text("AGENT_RUNTIME_ENVIRONMENT=production\n")
    with pytest.raises(ConfigError, match=r"environment \+ \.env: environment: Extra inputs are not permitted"):
        load_settings()


def test_provider_follows_the_keys_present_and_falls_back_to_the_offline_test_model(tmp_path: Path) -> None:
    llm = make_settings(tmp_path).llm.planner.model_copy(update={"provider": None})
    assert llm.resolved({}).provider == "offline" and llm.resolved({}).model == "offline-test"
    openai = llm.resolved({"OPENAI_API_KEY": "k", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"})
    assert (openai.provider, openai.base_url) == ("openai", "http://127.0.0.1:9/v1")
    assert openai.api_key is not None and openai.api_key.get_secret_value() == "k"
    assert llm.resolved({"ANTHROPIC_API_KEY": "a"}).provider == "anthropic"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("server: {port: 99999}\n", "server.port: Input should be less than or equal to 65535"),
        ("server: {colour: red}\n", "server.colour: Extra inputs are not permitted"),
        ("runner: {lease_seconds: 1, heartbeat_seconds: 2}\n", "runner: Value error, heartbeat_seconds (2.0)"),
        ("- just a list\n", "the top level must be a mapping"),
        ("server: [unclosed\n", "not valid YAML"),
    ],
)
def test_a_bad_config_file_is_one_error_naming_file_key_and_problem(tmp_path: Path, text: str, expected: str) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    assert str(config) in info.value.message and expected in info.value.message


def test_production_refuses_the_offline_test_model(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("server: {environment: production}\nllm: {planner: {provider: offline}}\n")
    with pytest.raises(ConfigError, match=r"llm.planner.provider is 'offline'"):
        load_settings(config)
    implied = tmp_path / "implied.yaml"
    implied.write_text("server: {environment: production}\n")
    with pytest.raises(ConfigError, match=r"llm.planner.provider is unset and no API key is set"):
        load_settings(implied)


def test_the_cli_stops_with_one_clear_message_on_a_bad_config(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("database: {url: 'mysql://nope'}\n")
    result = subprocess.run(
        [str(CLI), "serve", "--config", str(config)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"agent-runtime: configuration error: {config}: database.url: driver 'mysql' is not supported; "
        "use one of sqlite+aiosqlite, postgresql+asyncpg"
    )
    missing = subprocess.run(
        [str(CLI), "check-config", "--config", str(tmp_path / "absent.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode == 2 and "absent.yaml: cannot read config file" in missing.stderr
    no_key = tmp_path / "openai.yaml"
    no_key.write_text(f"llm: {{planner: {{provider: openai}}}}\ntools: {{registry_path: '{REGISTRY}'}}\n")
    result = subprocess.run([str(CLI), "serve", "--config", str(no_key)], capture_output=True, text=True, check=False)
    assert result.returncode == 2 and "OPENAI_API_KEY" in result.stderr and "Traceback" not in result.stderr


async def test_startup_says_loudly_that_the_offline_test_model_is_in_use(tmp_path: Path) -> None:
    with structlog.testing.capture_logs() as logs:
        runtime = await build_runtime(make_settings(tmp_path))
        await runtime.store.aclose()
    warnings = [entry for entry in logs if entry["event"] == "offline_test_model"]
    assert {w["role"] for w in warnings} == {"planner", "executor"}
    assert all(w["log_level"] == "warning" and "OFFLINE TEST MODEL" in w["message"] for w in warnings)
