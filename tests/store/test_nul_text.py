"""Text with NUL (U+0000) and the escape character (U+0001) round-trips through the store on every
backend: what a reader gets is exactly what was written (PostgreSQL escapes it, ``store/pg_text.py``)."""

from __future__ import annotations

import json

import pytest

from agent_runtime.domain.states import TaskStatus
from agent_runtime.store import pg_text
from agent_runtime.store.store import TaskStore

TRICKY = [
    "a\u0000b",
    "\u0000",
    "\u0001",
    "\u00010",
    "\u00011",
    "\u0000\u00000",
    "\\u0000",
    "\\\u0000",
    "\\\\u0001",
    'quote " and \u0001\u0000 end\\',
    "plain text",
]


@pytest.mark.parametrize("text", TRICKY)
def test_the_postgresql_escape_is_reversible_for_text_and_json(text: str) -> None:
    stored = pg_text.encode_text(text)
    assert "\u0000" not in stored and pg_text.decode_text(stored) == text
    document = pg_text.encode_json(json.dumps({text: [text]}))
    assert json.loads(document) == {stored: [stored]}  # what PostgreSQL is handed holds no NUL
    assert pg_text.loads(document) == {text: [text]}


def test_text_without_the_two_characters_is_left_as_it_is() -> None:
    document = json.dumps({"k": "v\n\t\\n"})
    assert pg_text.encode_json(document) is document
    assert pg_text.decode_text("plain") == "plain"


async def test_nul_in_results_outputs_and_tool_calls_reads_back_exactly_as_written(store: TaskStore) -> None:
    odd = "".join(TRICKY)
    task = await store.create_task("prompt \u0001 with the escape character", {"k\u0001": "v\u00010"},
                                   submitted_by="user\u0001")  # fmt: skip
    [lease] = await store.claim("w1", (TaskStatus.QUEUED,), limit=1, lease_seconds=30)
    async with store.transaction(task.id, lease) as tx:
        tx.update(result={"summary": odd, odd: [odd]}, error={"message": odd})
        tx.add_tool_call(step_id="s1", turn=0, call_index=0, tool_name="x.y", arguments={"text": odd},
                         result={"content": odd})  # fmt: skip
    assert tx.task.result == {"summary": odd, odd: [odd]}  # the holder's own view, from the write's row
    fetched = await store.get_task(task.id)
    assert fetched.prompt == task.prompt and fetched.metadata == {"k\u0001": "v\u00010"}
    assert fetched.submitted_by == "user\u0001"
    assert fetched.result == {"summary": odd, odd: [odd]} and fetched.error == {"message": odd}
    [call] = await store.tool_calls(task.id)
    assert call.arguments == {"text": odd} and call.result == {"content": odd}
    found, _ = await store.list_tasks(status=None, limit=10, cursor=None, submitted_by="user\u0001")
    assert [t.id for t in found] == [task.id]
