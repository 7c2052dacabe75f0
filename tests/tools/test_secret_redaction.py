"""Values the registry injects into a server (``env``, ``headers``, ``${VAR}``, ``${file:...}``)
never show where a server's stderr tail or error text does: service logs, ``GET /v1/tools``, task
errors and events. The server below prints its tokens to stderr, then fails (at start, or mid-call)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import structlog

from agent_runtime.settings import ToolSettings
from agent_runtime.tools.registry import load_registry, resolve_launch
from tests.support.harness import live_service, make_settings, read_stream
from tests.support.scripted import ScriptedModel, one_step_plan, openai_overrides

LEAKY = Path(__file__).parent / "servers" / "leaky_server.py"
ENV_TOKEN = "env-token-6f1c2e9a"
FILE_TOKEN = "file-token-b7d04c13"
INLINE_TOKEN = "inline-token-93ae51"
TOKENS = (ENV_TOKEN, FILE_TOKEN, INLINE_TOKEN)


def _registry(tmp: Path) -> Path:
    secret = tmp / "token.txt"
    secret.write_text(FILE_TOKEN + "\n")
    path = tmp / "tool_registry.yaml"
    path.write_text(
        "servers:\n"
        "  - id: leaky\n"
        "    type: local_stdio\n"
        f"    config: {{command: '${{PYTHON}}', args: ['{LEAKY}'],\n"
        f"             env: {{LEAKY_TOKEN: '${{LEAKY_TEST_TOKEN}}', LEAKY_FILE_TOKEN: '${{file:{secret}}}'}}}}\n"
        "  - id: broken\n"
        "    type: local_stdio\n"
        f"    config: {{command: '${{PYTHON}}', args: ['{LEAKY}'],\n"
        f"             env: {{LEAKY_TOKEN: '{INLINE_TOKEN}', LEAKY_FAIL_AT_START: '1'}}}}\n"
    )
    return path


def test_a_launch_spec_names_what_the_registry_injected_and_redacts_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tool_settings: ToolSettings
) -> None:
    monkeypatch.setenv("LEAKY_TEST_TOKEN", ENV_TOKEN)
    registry = load_registry(_registry(tmp_path))
    leaky_entry, broken_entry = registry.get("leaky"), registry.get("broken")
    assert leaky_entry is not None and broken_entry is not None
    leaky = resolve_launch(leaky_entry, registry=registry, settings=tool_settings, workspace=tmp_path)
    broken = resolve_launch(broken_entry, registry=registry, settings=tool_settings, workspace=tmp_path)
    assert leaky.redact(f"a {ENV_TOKEN} b {FILE_TOKEN} c") == "a *** b *** c"
    assert broken.redact(f"x{INLINE_TOKEN}y 1") == "x***y 1"
    assert leaky.redact(str(tmp_path)) == str(tmp_path)  # ${WORKSPACE} and ${PYTHON} are not secrets


async def test_injected_secrets_printed_to_stderr_show_nowhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEAKY_TEST_TOKEN", ENV_TOKEN)
    model = ScriptedModel(one_step_plan("leaky.leak"), {"s1": [("leaky.leak", {})]})
    settings = make_settings(tmp_path, registry=_registry(tmp_path))
    with structlog.testing.capture_logs() as logs:
        async with live_service(settings, openai_overrides(model.fake())) as live:
            tools = (await live.client.get("/v1/tools")).json()
            task_id = (await live.submit("leak it"))["id"]
            await live.wait_for(task_id, "approval_required")
            await live.approve(task_id, 1)
            events = await read_stream(live.client, task_id, until="needs_attention")
            task = await live.task(task_id)
            tools_after = (await live.client.get("/v1/tools")).json()
    shown = {
        "tools": json.dumps(tools),
        "tools_after": json.dumps(tools_after),
        "events": json.dumps(events),
        "task": json.dumps(task),
        "logs": repr(logs),
    }
    for where, text in shown.items():
        for token in TOKENS:
            assert token not in text, f"{token} shown in {where}"
    # the texts are there, redacted: the broken server's start failure and the call's failure
    assert "debug: LEAKY_TOKEN=***" in shown["tools"]
    assert "debug: LEAKY_TOKEN=***" in shown["events"] and "LEAKY_FILE_TOKEN=***" in shown["events"]
