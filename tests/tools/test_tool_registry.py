"""The registry loader: the default file, placeholder expansion, and errors that say what to fix."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

from agent_runtime.errors import ConfigError
from agent_runtime.settings import ToolSettings
from agent_runtime.tools.registry import HttpServer, Registry, StdioServer, load_registry, resolve_launch
from tests.tools.tool_helpers import EXAMPLE_SERVER, REPO, example_entry, make_registry


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tool_registry.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_default_registry_starts_the_example_server_with_the_service_interpreter(tmp_path: Path) -> None:
    registry = load_registry(REPO / "tool_registry.yaml")
    example = registry.get("example")
    assert isinstance(example, StdioServer)
    assert example.enabled
    spec = resolve_launch(example, registry=registry, settings=ToolSettings(), workspace=tmp_path)
    assert spec.command == sys.executable
    assert spec.args == (str(EXAMPLE_SERVER),)
    assert spec.cwd == tmp_path


def test_placeholders_come_from_the_environment_and_the_workspace(tmp_path: Path) -> None:
    registry = make_registry(
        {
            "id": "srv",
            "type": "local_stdio",
            "config": {
                "command": "bin/server",
                "args": ["--root", "${WORKSPACE}", "--cost", "$$5"],
                "env": {"TOKEN": "${MY_TOKEN}", "PLAIN": "x"},
            },
        },
        {
            "id": "remote",
            "type": "remote_http",
            "config": {"url": "${REMOTE_URL}", "headers": {"Authorization": "Bearer ${MY_TOKEN}"}},
        },
    )
    env = {"MY_TOKEN": "s3cret", "REMOTE_URL": "http://127.0.0.1:9/mcp"}
    srv, remote = registry.servers
    settings = ToolSettings()
    spec = resolve_launch(
        srv, registry=registry, settings=settings, workspace=tmp_path, extra_env={"EXTRA": "1"}, environ=env
    )
    assert spec.command == str(REPO / "bin" / "server")  # relative commands resolve against the registry dir
    assert spec.args == ("--root", str(tmp_path), "--cost", "$5")
    assert spec.env == {"TOKEN": "s3cret", "PLAIN": "x", "EXTRA": "1"}
    http = resolve_launch(remote, registry=registry, settings=ToolSettings(), workspace=tmp_path, environ=env)
    assert http.url == "http://127.0.0.1:9/mcp"
    assert http.headers == {"Authorization": "Bearer s3cret"}


def test_a_missing_variable_names_the_server_and_key(tmp_path: Path) -> None:
    config = {"command": "${PYTHON}", "env": {"KEY": "${NOT_SET_ANYWHERE}"}}
    registry = make_registry(example_entry(config=config))
    expected = r"server 'example': config\.env\.KEY: \$\{NOT_SET_ANYWHERE\} is not set"
    with pytest.raises(ConfigError, match=expected):
        resolve_launch(registry.servers[0], registry=registry, settings=ToolSettings(), workspace=tmp_path, environ={})


def test_timeouts_default_to_the_settings_and_can_be_overridden(tmp_path: Path) -> None:
    registry = make_registry(example_entry("a"), example_entry("b", connect_timeout_seconds=2, call_timeout_seconds=3))
    settings = ToolSettings(connect_timeout_seconds=11, call_timeout_seconds=12)
    a, b = (resolve_launch(s, registry=registry, settings=settings, workspace=tmp_path) for s in registry.servers)
    assert (a.connect_timeout, a.call_timeout) == (11, 12)
    assert (b.connect_timeout, b.call_timeout) == (2, 3)


def test_per_tool_idempotent_overrides_are_kept() -> None:
    registry = make_registry(example_entry(tools={"write_note": {"idempotent": True}, "add": {}}))
    overrides = registry.servers[0].tool_overrides()
    assert {name: o.annotations() for name, o in overrides.items()} == {"write_note": {"idempotent": True}}


def test_disabled_servers_are_not_enabled() -> None:
    registry = make_registry(example_entry("on"), example_entry("off", enabled=False))
    assert [s.id for s in registry.enabled()] == ["on"]


def test_a_remote_entry_parses_as_http() -> None:
    registry = make_registry({"id": "r", "type": "remote_http", "config": {"url": "https://example.org/mcp"}})
    assert isinstance(registry.servers[0], HttpServer)


@pytest.mark.parametrize(
    ("servers", "expected"),
    [
        (
            [example_entry("dup"), example_entry("dup")],
            r"servers\[1\]: id 'dup' is already used by servers\[0\]",
        ),
        ([example_entry("a.b")], r"servers\[0\] \(id 'a\.b'\): id: String should match pattern"),
        (
            [{"id": "x", "type": "local_stdio", "config": {"args": []}}],
            r"servers\[0\] \(id 'x'\): config\.command: Field required",
        ),
        (
            [{"id": "x", "type": "carrier_pigeon", "config": {}}],
            r"servers\[0\] \(id 'x'\): .*'local_stdio', 'remote_http'",
        ),
        (
            [example_entry("x", colour="blue")],
            r"servers\[0\] \(id 'x'\): colour: Extra inputs are not permitted",
        ),
        ([example_entry("x", prewarm=-1)], r"servers\[0\] \(id 'x'\): prewarm: Input should be greater than"),
        (
            [{"id": "r", "type": "remote_http", "config": {"url": "ftp://nope"}}],
            r"servers\[0\] \(id 'r'\): config\.url: String should match pattern",
        ),
        (
            [{"id": "r", "type": "remote_http", "config": {"url": "https://h/mcp"}, "prewarm": 1}],
            r"servers\[0\] \(id 'r'\): prewarm applies to local_stdio servers only",
        ),
        (
            [example_entry("w", prewarm=1, config={"command": "x", "args": ["${WORKSPACE}"]})],
            r"servers\[0\] \(id 'w'\): prewarm needs a server that gets the workspace only as its working",
        ),
    ],
)
def test_invalid_entries_name_file_server_key_and_problem(
    tmp_path: Path, servers: list[dict[str, object]], expected: str
) -> None:
    path = write(tmp_path, yaml.safe_dump({"servers": servers}))
    with pytest.raises(ConfigError) as info:
        load_registry(path)
    assert str(path) in info.value.message
    assert info.value.message == str(info.value)
    assert re.search(expected, info.value.message), info.value.message


def test_unreadable_or_malformed_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read tool registry"):
        load_registry(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_registry(write(tmp_path, "servers: [\n"))
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_registry(write(tmp_path, "- just\n- a list\n"))


def test_an_empty_file_is_an_empty_registry(tmp_path: Path) -> None:
    registry = load_registry(write(tmp_path, ""))
    assert registry.servers == ()
    assert isinstance(Registry.from_data(None, base_dir=tmp_path), Registry)


def test_secrets_come_from_mounted_files_and_remote_servers_get_per_task_headers(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("from-a-file\n")
    registry = make_registry(
        {
            "id": "srv",
            "type": "local_stdio",
            "config": {"command": "bin/server", "env": {"TOKEN": f"${{file:{secret}}}", "TASK": "${TASK_ID}"}},
        },
        {
            "id": "remote",
            "type": "remote_http",
            "config": {"url": "http://127.0.0.1:9/mcp", "headers": {"Authorization": f"Bearer ${{file:{secret}}}"}},
        },
    )
    srv, remote = registry.servers
    spec = resolve_launch(srv, registry=registry, settings=ToolSettings(), workspace=tmp_path, task_id="task_1")
    assert spec.env == {"TOKEN": "from-a-file", "TASK": "task_1"}
    http = resolve_launch(remote, registry=registry, settings=ToolSettings(), workspace=tmp_path, task_id="task_1")
    assert http.headers == {"Authorization": "Bearer from-a-file", "X-Agent-Runtime-Task-Id": "task_1"}
    secret.unlink()
    with pytest.raises(ConfigError, match=r"server 'srv': config.env.TOKEN: cannot read secret file"):
        resolve_launch(srv, registry=registry, settings=ToolSettings(), workspace=tmp_path, task_id="task_1")
