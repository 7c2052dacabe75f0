"""Provider fallback through the public API: the primary is down, the fallback answers and is named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent_runtime.testing import FakeLLM, Reply, ScriptedModel, one_step_plan, serve_on_loopback
from tests.support.harness import live_service, make_settings, read_stream, write_registry


def _role(primary: str, fallback: str) -> dict[str, Any]:
    return {
        "provider": "openai",
        "model": "gpt-primary",
        "base_url": f"{primary}/v1",
        "api_key": "sk-test-primary",
        "max_retries": 1,
        "retry_base_delay_seconds": 0.001,
        "fallback": [
            {"provider": "openai", "model": "gpt-fallback", "base_url": f"{fallback}/v1", "api_key": "sk-test-fb"}
        ],
    }


async def test_with_the_primary_down_the_fallback_plans_and_executes_and_is_named_everywhere(tmp_path: Path) -> None:
    down = FakeLLM(responder=lambda _: Reply.error(503))
    model = ScriptedModel(one_step_plan("example.echo"), {"s1": [("example.echo", {"text": "hi"})]})
    with serve_on_loopback(down) as primary, serve_on_loopback(model.fake()) as fallback:
        role = _role(primary, fallback)
        settings = make_settings(tmp_path, registry=write_registry(tmp_path), llm={"planner": role, "executor": role})
        async with live_service(settings) as live:
            task_id = (await live.submit("echo hi"))["id"]
            events = await live.wait_for(task_id, "approval_required")
            proposed = next(e for e in events if e["sse_event"] == "plan_proposed")
            assert proposed["data"]["author"] == "planner:openai/gpt-fallback"
            versions = (await live.client.get(f"/v1/tasks/{task_id}/plan/versions")).json()
            assert versions[0]["author"] == "planner:openai/gpt-fallback"
            assert (await live.approve(task_id, 1)).status_code == 202
            events = await read_stream(live.client, task_id, until="task_completed")
            metrics = (await live.client.get("/metrics")).text

    usage = [e["data"] for e in events if e["sse_event"] == "llm_usage"]
    assert {u["role"] for u in usage} == {"planner", "executor"}
    assert {u["model"] for u in usage} == {"gpt-fallback"}
    # Metrics count each model under its own name: the primary's failures, the fallback's answers.
    assert 'model="gpt-primary",outcome="llm_error",provider="openai"' in metrics
    assert 'model="gpt-fallback",outcome="ok",provider="openai"' in metrics
