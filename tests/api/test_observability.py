"""Request ids reach responses; with tracing on, spans cover request → planning → steps → tool calls."""

from __future__ import annotations

from pathlib import Path

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agent_runtime.runtime import Overrides
from tests.support.harness import live_service, make_settings, read_stream


async def test_every_response_carries_a_request_id_and_a_given_one_is_kept(tmp_path: Path) -> None:
    async with live_service(make_settings(tmp_path)) as live:
        generated = await live.client.get("/healthz")
        assert len(generated.headers["x-request-id"]) == 16
        given = await live.client.get("/v1/tasks", headers={"X-Request-ID": "req-42"})
        assert given.headers["x-request-id"] == "req-42"
        junk = await live.client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
        assert junk.headers["x-request-id"] != "bad id\twith spaces"


async def test_tracing_spans_cover_the_request_planning_steps_and_tool_calls(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    settings = make_settings(tmp_path, observability={"otel_enabled": True})
    async with live_service(settings, Overrides(span_exporter=exporter)) as live:
        created = await live.submit("Add 1 and 2.")
        await live.wait_for(created["id"], "approval_required")
        await live.approve(created["id"], 1)
        await read_stream(live.client, created["id"])
    spans = exporter.get_finished_spans()
    names = {s.name for s in spans}
    assert {"HTTP POST", "agent_runtime.plan", "agent_runtime.execute", "agent_runtime.step"} <= names
    assert "agent_runtime.tool_call" in names
    plan = next(s for s in spans if s.name == "agent_runtime.plan")
    assert plan.attributes is not None and plan.attributes["task_id"] == created["id"]
    call = next(s for s in spans if s.name == "agent_runtime.tool_call")
    assert call.attributes is not None and str(call.attributes["tool"]).startswith("example.")
