"""NUL (and the escape character U+0001) in a model's output or a tool's result is stored faithfully
on both backends: the task carries on, and every reader (GET, the event stream, the store) sees
exactly what the model and the tool produced. PostgreSQL cannot hold U+0000 in ``text``/``jsonb``;
the store escapes it there (``store/pg_text.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent_runtime.testing.scripted import ToolCalls
from tests.support.databases import database_url
from tests.support.harness import live_service, make_settings, read_stream, write_registry
from tests.support.scripted import ScriptedModel, one_step_plan, openai_overrides

ODD = "a\u0000b\u0001c\u00010\\u0000"
"""NUL, the escape character alone and followed by ``0``, and a literal backslash-u escape."""


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class _OddModel(ScriptedModel):
    """The scripted model, whose tool arguments and answers carry :data:`ODD`."""

    def turn(self, conversation: str, last_role: str, last_text: str, results: list[str]) -> str | ToolCalls:
        answer = super().turn(conversation, last_role, last_text, results)
        return answer + " " + ODD if isinstance(answer, str) else answer


async def test_nul_in_model_output_and_a_tool_result_is_stored_and_read_back_intact(
    tmp_path: Path, backend: str
) -> None:
    # (a plan with NUL is refused by the Plan model on both backends: it is not storable text)
    model = _OddModel(one_step_plan("example.echo"), {"s1": [("example.echo", {"text": ODD})]})
    async with database_url(backend, tmp_path) as url:
        settings = make_settings(
            tmp_path, registry=write_registry(tmp_path), database={"url": url, "auto_migrate": True}
        )
        async with live_service(settings, openai_overrides(model.fake())) as live:
            task_id = (await live.submit("echo something odd"))["id"]
            seen = await live.wait_for(task_id, "approval_required")
            assert seen[-1]["sse_event"] == "approval_required", seen[-1]
            approved = await live.approve(task_id, 1)
            assert approved.status_code == 202, approved.text
            events = await read_stream(live.client, task_id)
            assert events[-1]["sse_event"] == "task_completed", events[-1]

            task = await live.task(task_id)
            assert task["status"] == "completed"
            step = task["plan"]["steps"][0]
            assert step["output"] == "step done: " + ODD + " " + ODD
            assert task["result"]["summary"].endswith(" " + ODD)

            calls = await live.runtime.store.tool_calls(task_id)
            assert [(c.arguments, c.status.value) for c in calls] == [({"text": ODD}, "completed")]
            assert ODD in _strings(calls[0].result)

            # the stream, replayed from the store, carries the same text
            completed = [e for e in events if e["sse_event"] == "tool_call_completed"]
            assert ODD in _strings(completed[0]["data"])
            finished = [e for e in events if e["sse_event"] == "step_completed"]
            assert _strings(finished[0]["data"]) & {step["output"]}


def _strings(value: Any) -> set[str]:
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        return set().union(*(_strings(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_strings(v) for v in value)) if value else set()
    return set()
