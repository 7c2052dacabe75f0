"""The execution journal's group commit, on every backend: what waits for durability, what lingers,
and that records keep their order and their lease fence."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from agent_runtime.agents.execution import BudgetExceededError
from agent_runtime.domain.events import Event, EventType, TaskCompleted
from agent_runtime.domain.plan import Plan, PlanStep
from agent_runtime.domain.records import Lease
from agent_runtime.domain.states import StepStatus, TaskStatus, ToolCallStatus
from agent_runtime.errors import LeaseLostError
from agent_runtime.llm.base import LLMResponse, Usage
from agent_runtime.services.bus import EventBus
from agent_runtime.services.journal import StoreJournal
from agent_runtime.services.usage import UNPRICED
from agent_runtime.store.store import TaskStore
from agent_runtime.store.tx import TaskTx
from agent_runtime.tools.base import ToolResult
from tests.support.databases import migrated_store

HOUR = 3600.0


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TaskStore]:
    async with migrated_store(request.param, tmp_path, EventBus()) as store:
        yield store


async def _executing(store: TaskStore) -> Lease:
    """A task with an approved one-step plan, leased and executing."""
    task = await store.create_task("p", {})
    [lease] = await store.claim("w1", [TaskStatus.QUEUED], limit=1, lease_seconds=60)
    async with store.transaction(task.id, lease) as tx:
        tx.transition(TaskStatus.PLANNING)
        plan = Plan(summary="s", steps=[PlanStep(id="a", title="A", instruction="i", tools=["x.y"], depends_on=[])])
        version = tx.add_plan_version(plan, "test")
        tx.transition(TaskStatus.AWAITING_APPROVAL)
    async with store.transaction(task.id) as tx:
        tx.transition(TaskStatus.APPROVED, approved_plan_version=version)
    [lease] = await store.claim("w1", [TaskStatus.APPROVED], limit=1, lease_seconds=60)
    async with store.transaction(task.id, lease) as tx:
        tx.transition(TaskStatus.EXECUTING)
    return lease


def _bus(store: TaskStore) -> EventBus:
    assert isinstance(store.listener, EventBus)
    return store.listener


async def _stored_types(store: TaskStore, task_id: str, after: int) -> list[str]:
    return [e.type for e in await store.events_after(task_id, after)]


async def test_a_call_is_durable_with_everything_before_it_before_the_tool_runs(store: TaskStore) -> None:
    lease = await _executing(store)
    journal = StoreJournal(store, lease, 1, linger=HOUR)  # nothing commits unless a barrier asks
    async with journal.running():
        await journal.step_started("a", resumed=False)
        await journal.text_delta("a", "thinking")
        assert await _stored_types(store, lease.task_id, lease.last_seq) == []  # lingering, not written
        before = journal.commits
        call_id = await journal.call_started("a", 1, 0, "x.y", {"v": 1}, retry_of=None)
        # What a takeover would see right now, while the tool runs:
        [call] = await store.tool_calls(lease.task_id, "a")
        assert (call.id, call.status) == (call_id, ToolCallStatus.STARTED)
        [step] = [s for s in await store.steps(lease.task_id, 1) if s.step_id == "a"]
        assert step.status == StepStatus.RUNNING
        events = await store.events_after(lease.task_id, 0)
        assert [e.type for e in events][-3:] == ["step_started", "text_delta", "tool_call_started"]
        assert journal.commits == before + 1  # the three records, one transaction
        assert len({e.created_at for e in events[-3:]}) == 1


async def test_lingering_records_are_committed_without_a_barrier(store: TaskStore) -> None:
    lease = await _executing(store)
    sub = _bus(store).subscribe(lease.task_id, after=lease.last_seq)
    journal = StoreJournal(store, lease, 1, linger=0.001)
    seen: list[Event] = []
    async with journal.running():
        await journal.step_started("a", resumed=False)
        with anyio.fail_after(10):
            while not any(e.type == EventType.STEP_STARTED for e in seen):
                await sub.wait(10)
                seen.extend(sub.drain())
    assert journal.commits == 1


async def test_results_and_completion_linger_then_commit_in_order_with_the_final_transition(
    store: TaskStore,
) -> None:
    lease = await _executing(store)
    journal = StoreJournal(store, lease, 1, linger=HOUR)
    async with journal.running():
        await journal.step_started("a", resumed=False)
        call_id = await journal.call_started("a", 1, 0, "x.y", {}, retry_of=None)
        await journal.progress(call_id, "a", 0.5, 1.0, "half")
        await journal.call_completed(call_id, "a", "x.y", ToolResult(text="ok"), 0.01)
        await journal.progress(call_id, "a", 1.0, 1.0, "late")  # after the result: dropped
        await journal.step_completed("a", "done")
        assert [c.status for c in await store.tool_calls(lease.task_id)] == [ToolCallStatus.STARTED]

        def finish(tx: TaskTx) -> None:
            tx.transition(TaskStatus.COMPLETED, result={"summary": "s"})
            tx.emit(TaskCompleted(summary="s"))

        await journal.commit(finish)
    types = await _stored_types(store, lease.task_id, 0)
    assert types[-5:] == [
        "tool_call_started",
        "tool_progress",
        "tool_call_completed",
        "step_completed",
        "task_completed",
    ]
    assert [c.status for c in await store.tool_calls(lease.task_id)] == [ToolCallStatus.COMPLETED]
    assert (await store.get_task(lease.task_id)).status == TaskStatus.COMPLETED
    assert journal.commits == 2


async def test_a_lost_lease_refuses_the_batch_and_the_worker_hears_of_it(store: TaskStore) -> None:
    lease = await _executing(store)
    journal = StoreJournal(store, lease, 1, linger=HOUR)
    with pytest.raises(LeaseLostError):
        async with journal.running():
            await journal.step_started("a", resumed=False)
            async with store.transaction(lease.task_id) as tx:  # an operator cancels: the fence moves
                tx.transition(TaskStatus.CANCELLED)
            await journal.call_started("a", 1, 0, "x.y", {}, retry_of=None)
    assert await store.tool_calls(lease.task_id) == []
    assert "step_started" not in await _stored_types(store, lease.task_id, 0)


async def test_a_lingering_record_the_fence_refuses_is_never_dropped_silently(store: TaskStore) -> None:
    lease = await _executing(store)
    journal = StoreJournal(store, lease, 1, linger=0)  # the committer tries at once
    with pytest.raises(LeaseLostError):
        async with journal.running():
            async with store.transaction(lease.task_id) as tx:
                tx.transition(TaskStatus.CANCELLED)
            await journal.step_started("a", resumed=False)
    assert "step_started" not in await _stored_types(store, lease.task_id, 0)


async def test_a_barrier_whose_record_was_lost_with_another_steps_commit_does_not_pass(store: TaskStore) -> None:
    """Parallel steps share the journal: step b's write-ahead record can ride in step a's commit.
    If that commit is refused, b must hear of it too, not find nothing pending and run its tool."""
    lease = await _executing(store)
    journal = StoreJournal(store, lease, 1, linger=HOUR)
    outcomes: dict[str, BaseException | str] = {}

    async def call(step: str) -> None:
        try:
            outcomes[step] = await journal.call_started(step, 1, 0, "x.y", {}, retry_of=None)
        except LeaseLostError as exc:
            outcomes[step] = exc

    with pytest.raises(LeaseLostError):
        async with journal.running():
            async with store.transaction(lease.task_id) as tx:  # an operator cancels: the fence moves
                tx.transition(TaskStatus.CANCELLED)
            # A commit in progress holds the lock: both records queue behind it.
            async with anyio.create_task_group() as tg, journal._commit_lock:
                tg.start_soon(call, "a")
                tg.start_soon(call, "b")
                await anyio.wait_all_tasks_blocked()
                assert len(journal._pending) == 2
    # One flush took both records and was refused; the other barrier raised instead of passing.
    assert set(outcomes) == {"a", "b"}
    assert all(isinstance(o, LeaseLostError) for o in outcomes.values()), outcomes
    assert await store.tool_calls(lease.task_id) == []


async def test_a_resumed_step_replays_only_the_calls_of_its_current_attempt(store: TaskStore) -> None:
    """A retried step starts over; if its worker then dies, the takeover replays this attempt's
    calls, not the failed attempt's (``attempts``: when each running step's attempt started)."""
    lease = await _executing(store)
    first = StoreJournal(store, lease, 1, linger=HOUR)
    async with first.running():
        await first.step_started("a", resumed=False)
        old = await first.call_started("a", 1, 0, "x.y", {"attempt": 1}, retry_of=None)
        await first.call_completed(old, "a", "x.y", ToolResult(text="first"), 0.01)
    second = StoreJournal(store, lease, 1, linger=HOUR)
    async with second.running():
        await second.step_started("a", resumed=False)  # the retried attempt: a new started_at
        new = await second.call_started("a", 1, 0, "x.y", {"attempt": 2}, retry_of=None)
    [step] = [s for s in await store.steps(lease.task_id, 1) if s.step_id == "a"]
    takeover = StoreJournal(store, lease, 1, linger=HOUR, attempts={"a": step.started_at})
    async with takeover.running():
        assert [c.id for c in await takeover.prior_calls("a")] == [new]
    everything = StoreJournal(store, lease, 1, linger=HOUR)
    async with everything.running():
        assert [c.id for c in await everything.prior_calls("a")] == [old, new]


async def test_a_resumed_run_remembers_that_an_earlier_model_call_had_no_price(store: TaskStore) -> None:
    """A model without a price makes the task's cost a lower bound: a cost limit counts as reached,
    in the run that made the call and in every run after it (the count is stored with the usage)."""
    lease = await _executing(store)

    def price(model: str, input_tokens: int, output_tokens: int) -> float | None:
        return 0.001 if model == "priced" else None

    first = StoreJournal(store, lease, 1, linger=HOUR, price=price, model="unpriced", budget={"cost_usd": 1.0})
    async with first.running():
        first.check_budget("llm")  # nothing spent yet
        await first.llm_used("a", LLMResponse(text="", usage=Usage(10, 5)))
        with pytest.raises(BudgetExceededError) as breach:
            first.check_budget("llm")
        assert breach.value.limit == "cost_usd"
    usage = (await store.get_task(lease.task_id)).usage
    assert usage is not None and usage[UNPRICED] == 1
    resumed = StoreJournal(
        store, lease, 1, linger=HOUR, price=price, model="priced", usage=usage, budget={"cost_usd": 1.0}
    )
    async with resumed.running():
        with pytest.raises(BudgetExceededError):
            resumed.check_budget("llm")
