"""Random interleavings of operator commands, worker progress and stream reconnects cannot break a task.

A Hypothesis state machine drives the live service (uvicorn in process, the real OpenAI SDK talking
to a scripted model, the example MCP server over stdio) with random sequences of submit, approve
(current, stale, repeated, future), edit, revise, reject, cancel, resolve, waits for the workers,
and stream reconnects at random positions. The service runs in a background event loop (an anyio
blocking portal), because a ``RuleBasedStateMachine`` is synchronous. One service serves every
example of a run; each example tracks its own tasks, and every example ends with all its tasks
final, so the checks below see whole lives.

After every rule it checks, for every task of the example:

- its events are gap-free (``seq`` 1..n) and only the changes in ``TRANSITIONS`` happen (the status
  is rebuilt from the events and must match the stored row); a final task never changes again;
- the events that commands write (``task_approved``, ``plan_edited`` …) are exactly those of the
  commands the service accepted, in order: every accepted command left its event, no refused one did;
- a command that changed nothing (refused, or a repeated approve) left no trace: no event, and the
  task row (``updated_at`` included) unchanged unless a worker wrote in between;
- no tool call ran twice: every call the example server really made (its own call log) carries a
  fresh nonce chosen by the model, appears once, and was recorded as ``tool_call_started`` before it
  ran; once the tasks are final, each tool's real calls equal its ``tool_call_completed`` events
  plus the calls a cancel cut off (there is no crash in this test);
- a stream opened at any position replays exactly the stored events after it, and a final task's
  stream ends with its final event.

The tools are ``write_note`` (not safe to repeat) and ``add`` with an ``idempotent: false``
registry override, so every call of both must be counted exactly once.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest
import sqlalchemy as sa
from anyio.from_thread import BlockingPortal
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from agent_runtime.domain.events import Event
from agent_runtime.domain.states import TERMINAL, TRANSITIONS, TaskStatus
from agent_runtime.store import schema as t
from tests.support.databases import PG_SKIP_REASON, database_url, postgres_url
from tests.support.fake_llm import FakeLLM, RecordedRequest, Reply, ScriptedCall
from tests.support.harness import Live, live_service, make_settings, read_stream, write_registry
from tests.support.scripted import openai_overrides, wire

T = TypeVar("T")
S = TaskStatus

QUIET = frozenset({S.AWAITING_APPROVAL, S.NEEDS_ATTENTION}) | TERMINAL
"""States in which nothing happens to a task until someone sends a command (no crash in this test)."""

COMMAND_EVENTS = frozenset(
    {"task_created", "task_approved", "plan_edited", "revision_requested", "task_rejected", "task_cancelled"}
    | {"attention_resolved", "approval_recorded", "task_retried"}
)
"""Events that only a command writes: the event log's ledger of accepted commands."""

TOOLS = ("write_note", "add")
WAIT_SECONDS = 60


def _step(step_id: str, tool: str, depends_on: list[str]) -> dict[str, Any]:
    return {"id": step_id, "title": tool, "instruction": f"call {tool}", "tools": [f"example.{tool}"],
            "depends_on": depends_on}  # fmt: skip


PROPOSED = {"summary": "write a note, then add", "steps": [_step("w1", "write_note", []), _step("a1", "add", ["w1"])]}
EDITS = (
    {"summary": "only add", "steps": [_step("a2", "add", [])]},
    {"summary": "two notes", "steps": [_step("w2", "write_note", []), _step("w3", "write_note", ["w2"])]},
)


class CountingModel:
    """Plans :data:`PROPOSED`; in a step's first turn calls the step's tool with a fresh nonce in its
    arguments (``w…`` steps: ``write_note``, ``a…`` steps: ``add``), so every real call is traceable."""

    def __init__(self) -> None:
        self._nonces = itertools.count(1)

    def __call__(self, request: RecordedRequest) -> Reply:
        body = request.body
        if "response_format" in body:
            return Reply(json=PROPOSED)
        messages: list[dict[str, Any]] = body["messages"]
        if messages[-1]["role"] == "tool":
            return Reply(text="step done")
        prompt = str(messages[-1]["content"])
        if "Your step (w" in prompt:
            nonce = next(self._nonces)
            return Reply.calls(ScriptedCall(wire("example.write_note"), {"name": f"n{nonce}", "text": f"{nonce}"}))
        if "Your step (a" in prompt:
            nonce = next(self._nonces)
            return Reply.calls(ScriptedCall(wire("example.add"), {"a": nonce, "b": 0}))
        return Reply(text="summary: all steps finished")


def nonce_of(tool: str, arguments: dict[str, Any]) -> str:
    return f"{tool}:{arguments['name'] if tool == 'write_note' else int(arguments['a'])}"


# -- reading the service -----------------------------------------------------------------------------


async def stored_events(live: Live, task_id: str) -> list[Event]:
    return await live.runtime.store.events_after(task_id, 0, 100_000)


async def raw_row(live: Live, task_id: str) -> dict[str, Any]:
    """The task row exactly as stored."""
    async with live.runtime.store.engine.connect() as conn:
        row = (await conn.execute(sa.select(t.tasks).where(t.tasks.c.id == task_id))).mappings().one()
    return dict(row)


async def settle(live: Live, task_id: str) -> None:
    """Wait until the task is quiet (awaiting a decision, or final), reading its stream: a busy task
    always writes another event (a worker claims it at once), so waiting for the next one is safe."""
    with anyio.fail_after(WAIT_SECONDS):
        while True:
            task = await live.runtime.store.get_task(task_id)  # status and last_seq from one row
            if task.status in QUIET:
                return
            await read_stream(live.client, task_id, after=task.last_seq, limit=1, timeout=WAIT_SECONDS)


def replayed(stream: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Streamed events as the stored ``Event.to_json()`` (the SSE fields checked against it first)."""
    out = []
    for payload in stream:
        body = {k: v for k, v in payload.items() if k not in ("sse_id", "sse_event")}
        assert payload["sse_id"] == body["seq"] and payload["sse_event"] == body["type"], payload
        out.append(body)
    return out


def as_json(events: list[Event]) -> list[dict[str, Any]]:
    return [json.loads(json.dumps(e.to_json())) for e in events]


def rebuilt_status(events: list[Event]) -> TaskStatus:
    """Replay the events through the state table; fail on any change ``TRANSITIONS`` does not allow."""
    assert events and events[0].type == "task_created", [e.type for e in events[:1]]
    assert events[0].data["status"] == S.QUEUED.value, events[0].data
    status: TaskStatus = S.QUEUED
    previous = events[0]
    for event in events[1:]:
        target: TaskStatus | None = None
        kind, data = event.type, event.data
        assert status not in TERMINAL, f"event {event.seq} ({kind}) after the task became {status}"
        if kind == "planning_started":
            if not (previous.type == "task_resumed" and status == S.PLANNING):
                target = S.PLANNING
        elif kind == "task_resumed":
            if data["phase"] == "executing" and status == S.APPROVED:
                target = S.EXECUTING
            else:
                assert status == S(data["phase"]), f"task_resumed({data['phase']}) while {status}"
        elif kind == "approval_required":
            assert status == S.AWAITING_APPROVAL, f"approval_required while {status}"
        elif kind == "attention_resolved":
            target = None if data["action"] == "fail" else S.APPROVED
        elif kind == "task_cancelled":
            assert S(data["previous_status"]) == status, (data, status)
            target = S.CANCELLED
        else:
            target = {
                "plan_proposed": S.AWAITING_APPROVAL, "plan_edited": S.AWAITING_APPROVAL,
                "revision_requested": S.QUEUED, "task_approved": S.APPROVED, "task_rejected": S.REJECTED,
                "execution_started": S.EXECUTING, "needs_attention": S.NEEDS_ATTENTION, "task_retried": S.APPROVED,
                "task_completed": S.COMPLETED, "task_failed": S.FAILED, "replan_requested": S.QUEUED,
            }.get(kind)  # fmt: skip
        if target is not None:
            assert target in TRANSITIONS[status], f"event {event.seq} ({kind}): {status} -> {target} is not allowed"
            status = target
        previous = event
    return status


def read_call_log(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


# -- the state machine -------------------------------------------------------------------------------


@dataclass
class Tracked:
    id: str
    commands: list[str] = field(default_factory=lambda: ["task_created"])
    """Events of the commands the service accepted for this task, in order."""
    final: tuple[Any, ...] | None = None
    """(status, last_seq, updated_at) once the task was seen final."""


@dataclass
class Shared:
    portal: BlockingPortal
    live: Live
    log: Path
    all_tasks: list[str] = field(default_factory=list)
    examples: int = 0
    commands: dict[str, int] = field(default_factory=dict)
    """How often each (route, status) answer came: the run must have exercised accepted commands."""
    real_calls: dict[str, int] = field(default_factory=dict)
    """Real tool calls per tool (the example server's own call log), as of the last example."""


def build_machine(shared: Shared) -> type[RuleBasedStateMachine]:
    class TaskInterleavings(RuleBasedStateMachine):
        tasks = Bundle("tasks")

        def __init__(self) -> None:
            super().__init__()
            self.tracked: list[Tracked] = []
            shared.examples += 1

        def run(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
            return shared.portal.call(partial(fn, *args, **kwargs))

        # -- commands --------------------------------------------------------------------------

        def command(self, task: Tracked, method: str, path: str, body: dict[str, Any] | None, event: str) -> int:
            """Send a command; an accepted one must leave ``event``, any other no trace at all."""
            live = shared.live
            before = self.run(raw_row, live, task.id)
            response = self.run(live.client.request, method, f"/v1/tasks/{task.id}{path}", json=body)
            code = response.status_code
            assert code < 500, response.text
            label = f"{path or 'submit'} {code}"
            shared.commands[label] = shared.commands.get(label, 0) + 1
            changed = code in (201, 202) or (code == 200 and path != "/approve")
            if changed:
                task.commands.append(event)
                assert response.json()["id"] == task.id
            else:
                assert code in (200, 404, 409), (path, code, response.text)  # never a 422 for these bodies
                after = self.run(raw_row, live, task.id)
                if after["last_seq"] == before["last_seq"]:  # no worker wrote in between
                    # Only the lease holder's heartbeat may move while a worker runs.
                    assert {**after, "lease_expires_at": None} == {**before, "lease_expires_at": None}, path
            return code

        def versions(self, task: Tracked) -> tuple[int | None, int | None]:
            row = self.run(raw_row, shared.live, task.id)
            return row["current_plan_version"], row["approved_plan_version"]

        @rule(target=tasks)
        def submit(self) -> Tracked:
            response = self.run(shared.live.client.post, "/v1/tasks", json={"prompt": "note and add"})
            assert response.status_code == 202, response.text
            task = Tracked(response.json()["id"])
            self.tracked.append(task)
            shared.all_tasks.append(task.id)
            return task

        @rule(task=tasks, which=st.sampled_from(["current", "stale", "repeated", "future"]))
        def approve(self, task: Tracked, which: str) -> None:
            current, approved = self.versions(task)
            version = {
                "current": current or 1,
                "stale": (current or 1) - 1 or 1,
                "repeated": approved or current or 1,
                "future": (current or 0) + 1,
            }[which]
            self.command(task, "POST", "/approve", {"plan_version": version}, "task_approved")

        @rule(task=tasks, plan=st.sampled_from(EDITS), stale=st.booleans())
        def edit(self, task: Tracked, plan: dict[str, Any], stale: bool) -> None:
            current, _ = self.versions(task)
            base = max(1, (current or 1) - 1) if stale else current or 1
            self.command(task, "PUT", "/plan", {"base_version": base, "plan": plan}, "plan_edited")

        @rule(task=tasks)
        def revise(self, task: Tracked) -> None:
            self.command(task, "POST", "/revise", {"feedback": "smaller, please"}, "revision_requested")

        @rule(task=tasks)
        def reject(self, task: Tracked) -> None:
            self.command(task, "POST", "/reject", {"reason": "no"}, "task_rejected")

        @rule(task=tasks)
        def cancel(self, task: Tracked) -> None:
            self.command(task, "POST", "/cancel", {"reason": "enough"}, "task_cancelled")

        @rule(task=tasks, action=st.sampled_from(["retry", "skip", "fail"]), real_call=st.booleans())
        def resolve(self, task: Tracked, action: str, real_call: bool) -> None:
            """Nothing is in doubt without a crash: every resolve must be refused without a trace."""
            call_ids = [e.data["call_id"] for e in self.run(stored_events, shared.live, task.id)
                        if e.type == "tool_call_started"]  # fmt: skip
            call_id = call_ids[0] if real_call and call_ids else "call_000000000000"
            body = {"tool_call_id": call_id, "action": action, "result": "stated"}
            code = self.command(task, "POST", "/resolve", body, "attention_resolved")
            assert code in (404, 409), code

        @rule(task=tasks)
        def wait_for_workers(self, task: Tracked) -> None:
            self.run(settle, shared.live, task.id)

        @rule(task=tasks, cursor=st.integers(min_value=0, max_value=40), header=st.booleans())
        def reconnect(self, task: Tracked, cursor: int, header: bool) -> None:
            self.check_stream(task, cursor, header)

        # -- checks ----------------------------------------------------------------------------

        def check_stream(self, task: Tracked, cursor: int, header: bool) -> None:
            """Replay from ``cursor``: exactly the stored events after it; to the end for a final task."""
            live = shared.live
            row = self.run(raw_row, live, task.id)
            final = S(row["status"]) in TERMINAL
            pending = max(0, row["last_seq"] - cursor)
            if not final and pending == 0:
                return  # nothing stored after the cursor yet, and the task may wait forever
            where = {"last_event_id": cursor} if header else {"after": cursor}
            limit = None if final else pending
            streamed = replayed(self.run(read_stream, live.client, task.id, limit=limit, timeout=WAIT_SECONDS, **where))
            stored = as_json(self.run(stored_events, live, task.id))
            assert streamed == stored[cursor : cursor + len(streamed)], (cursor, header)
            if final:
                assert streamed == stored[cursor:], "a final task's stream must replay everything after its cursor"
                if cursor < len(stored):
                    assert stored[-1]["type"] in ("task_completed", "task_failed", "task_cancelled", "task_rejected")

        @invariant()
        def every_task_is_consistent(self) -> None:
            for task in self.tracked:
                row = self.run(raw_row, shared.live, task.id)
                events = self.run(stored_events, shared.live, task.id)
                assert [e.seq for e in events] == list(range(1, len(events) + 1)), "events must be gap-free"
                assert len(events) >= row["last_seq"]
                status = rebuilt_status(events[: row["last_seq"]])
                assert status == S(row["status"]), (task.id, status, row["status"])
                ledger = [e.type for e in events if e.type in COMMAND_EVENTS]
                assert ledger == task.commands, (task.id, ledger, task.commands)
                if status in TERMINAL:
                    seen = (row["status"], row["last_seq"], row["updated_at"])
                    assert len(events) == row["last_seq"], "no event after the final one"
                    assert task.final in (None, seen), f"final task {task.id} changed: {task.final} -> {seen}"
                    task.final = seen

        @invariant()
        def no_tool_call_ran_twice(self) -> None:
            starts = [e for e in read_call_log(shared.log) if e["event"] == "start"]  # the log first, then events
            nonces = [nonce_of(e["tool"], e["arguments"]) for e in starts]
            assert len(nonces) == len(set(nonces)), f"a tool call ran twice: {sorted(nonces)}"
            recorded = {
                nonce_of(e.data["tool"].partition(".")[2], e.data["arguments"])
                for task_id in shared.all_tasks
                for e in self.run(stored_events, shared.live, task_id)
                if e.type == "tool_call_started"
            }
            assert set(nonces) <= recorded, f"calls ran without a tool_call_started event: {set(nonces) - recorded}"

        def teardown(self) -> None:
            """End every task (cancel what waits for a decision), then check whole lives."""
            for task in self.tracked:
                self.run(settle, shared.live, task.id)
                if S(self.run(raw_row, shared.live, task.id)["status"]) not in TERMINAL:
                    self.command(task, "POST", "/cancel", None, "task_cancelled")
            self.every_task_is_consistent()
            for task in self.tracked:
                last = self.run(raw_row, shared.live, task.id)["last_seq"]
                self.check_stream(task, 0, header=False)
                self.check_stream(task, last // 2, header=True)
                self.check_stream(task, last + 5, header=True)
            self.no_tool_call_ran_twice()
            check_call_accounting(shared)

    return TaskInterleavings


def check_call_accounting(shared: Shared) -> None:
    """With every task final: each tool's real calls = its completed calls + the calls a cancel cut off."""
    events = [e for task_id in shared.all_tasks for e in shared.portal.call(stored_events, shared.live, task_id)]
    started = {e.data["call_id"]: e for e in events if e.type == "tool_call_started"}
    finished = {e.data["call_id"]: e.type for e in events if e.type in ("tool_call_completed", "tool_call_failed")}
    cancelled = {e.task_id for e in events if e.type == "task_cancelled"}
    real = [e for e in read_call_log(shared.log) if e["event"] == "start"]
    for tool in TOOLS:
        ran = sum(1 for e in real if e["tool"] == tool)
        completed = sum(1 for e in events if e.type == "tool_call_completed" and e.data["tool"] == f"example.{tool}")
        cut_off = {
            nonce_of(tool, e.data["arguments"])
            for call_id, e in started.items()
            if e.data["tool"] == f"example.{tool}" and call_id not in finished and e.task_id in cancelled
        }
        cut_off_and_ran = cut_off & {nonce_of(tool, e["arguments"]) for e in real if e["tool"] == tool}
        assert ran == completed + len(cut_off_and_ran), (tool, ran, completed, cut_off_and_ran)
        shared.real_calls[tool] = ran
    assert all(kind == "tool_call_completed" for kind in finished.values()), "no transport failures expected"


# -- the tests -----------------------------------------------------------------------------------------


@asynccontextmanager
async def _service(backend: str, tmp: Path, log: Path) -> AsyncIterator[Live]:
    registry = write_registry(tmp, call_log=log, extra="    tools:\n      add: {idempotent: false}\n")
    async with database_url(backend, tmp) as url:
        config = make_settings(tmp, registry=registry, database={"url": url, "auto_migrate": True})
        async with live_service(config, openai_overrides(FakeLLM(responder=CountingModel()))) as live:
            yield live


async def _run(backend: str, tmp: Path, *, examples: int, steps: int) -> None:
    """The service runs in this test's event loop (the main thread: its lifespan installs a SIGHUP
    handler); the state machine runs in a worker thread and calls into the loop through a portal."""
    log = tmp / "calls.jsonl"
    async with _service(backend, tmp, log) as live, BlockingPortal() as portal:
        shared = Shared(portal=portal, live=live, log=log)
        machine = build_machine(shared)
        config = settings(
            max_examples=examples,
            stateful_step_count=steps,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        )
        await anyio.to_thread.run_sync(partial(run_state_machine_as_test, machine, settings=config))
    assert shared.examples >= examples, shared.examples
    accepted = {k: v for k, v in shared.commands.items() if k.split()[1].startswith("2")}
    assert len(accepted) >= 5, f"too few kinds of accepted commands to mean anything: {shared.commands}"
    assert all(shared.real_calls.get(tool) for tool in TOOLS), f"no real calls of some tool: {shared.real_calls}"


async def test_random_interleavings_of_commands_workers_and_reconnects_keep_every_task_consistent_on_sqlite(
    tmp_path: Path,
) -> None:
    await _run("sqlite", tmp_path, examples=15, steps=30)


async def test_random_interleavings_keep_every_task_consistent_on_postgresql_in_ci(tmp_path: Path) -> None:
    if postgres_url() is None:
        pytest.skip(PG_SKIP_REASON)
    if not os.environ.get("CI"):
        pytest.skip("the longer PostgreSQL run of the interleavings test runs only when CI is set (CI=1)")
    await _run("postgres", tmp_path, examples=15, steps=40)
