"""Lease holders' writes: optimistic (from the holder's last view, fenced on the lease only), and
on PostgreSQL every task transaction in one function call (``agent_runtime_apply_v2``, migration
0004) that stores exactly what SQLite's statements store.

The contract parts run on every backend; the function's parts on PostgreSQL only.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import asyncpg
import pytest
import sqlalchemy as sa

from agent_runtime.domain.events import (
    ErrorBody,
    EventType,
    ExecutionStarted,
    StepCompleted,
    StepFailed,
    StepStarted,
    TaskApproved,
    TaskCompleted,
    TextDelta,
    ToolCallCompleted,
    ToolCallStarted,
)
from agent_runtime.domain.plan import Plan, PlanStep
from agent_runtime.domain.records import Lease, TaskRecord
from agent_runtime.domain.states import StepStatus, TaskStatus, ToolCallStatus
from agent_runtime.errors import LeaseLostError
from agent_runtime.services.pg_listener import asyncpg_dsn
from agent_runtime.store import pg_document, rows
from agent_runtime.store import schema as t
from agent_runtime.store.store import NOTIFY_CHANNEL, TaskStore
from agent_runtime.store.tx import TaskTx
from tests.support.databases import migrated_store, require_postgres

EXECUTION = (TaskStatus.APPROVED, TaskStatus.EXECUTING)


def _plan() -> Plan:
    return Plan(
        summary="s",
        steps=[
            PlanStep(id=f"s{i}", title=f"S{i}", instruction="do", tools=["x.y"], depends_on=[]) for i in range(1, 3)
        ],
    )


async def _executing(store: TaskStore, owner: str = "w1") -> Lease:
    """A task with an approved two-step plan, leased for execution and moved to ``executing``."""
    task = await store.create_task("p", {"k": "v"})
    [lease] = await store.claim(owner, (TaskStatus.QUEUED,), limit=1, lease_seconds=30)
    async with store.transaction(task.id, lease) as tx:
        tx.transition(TaskStatus.PLANNING)
        tx.add_plan_version(_plan(), "planner:test")
        tx.transition(TaskStatus.AWAITING_APPROVAL)
    async with store.transaction(task.id) as tx:
        tx.transition(TaskStatus.APPROVED, approved_plan_version=1)
        tx.emit(TaskApproved(plan_version=1, actor=None, content_hash="sha256:0", approvers=[]))
    [lease] = await store.claim(owner, EXECUTION, limit=1, lease_seconds=30)
    async with store.transaction(task.id, lease) as tx:
        tx.transition(TaskStatus.EXECUTING)
        tx.emit(ExecutionStarted(plan_version=1, content_hash=_plan().content_hash()))
    return lease


async def _table(store: TaskStore, table: sa.Table, task_id: str) -> list[dict[str, Any]]:
    """Every row of ``table`` for the task, JSON columns with an ``<name> IS NULL`` flag (SQL NULL
    and JSON null both read back as None)."""
    key = table.c.id if table is t.tasks else table.c.task_id
    json_cols = [c for c in table.columns if isinstance(c.type, sa.JSON)]
    stmt = sa.select(*table.columns, *(c.is_(None).label(f"{c.name}_is_sql_null") for c in json_cols)).where(
        key == task_id
    )
    stmt = stmt.order_by(*table.primary_key.columns)

    def read(conn: sa.Connection) -> list[dict[str, Any]]:
        found = [dict(r) for r in conn.execute(stmt).mappings()]
        return [{k: rows.aware(v) if isinstance(v, datetime) else v for k, v in r.items()} for r in found]

    async with store.engine.connect() as conn:
        return await conn.run_sync(read)


async def _snapshot_of_rows(store: TaskStore, task_id: str) -> dict[str, list[dict[str, Any]]]:
    return {table.name: await _table(store, table, task_id) for table in (t.tasks, t.steps, t.tool_calls, t.events)}


# -- every backend -------------------------------------------------------------------------------


async def test_a_non_holders_write_to_other_columns_never_fences_out_the_holder(
    store: TaskStore,
) -> None:
    """Only a new epoch or another owner invalidates a lease (docs/architecture.md, "Leases")."""
    lease = await _executing(store)
    async with store.transaction(lease.task_id) as tx:  # a change that neither emits nor bumps the epoch
        tx.update(revision_feedback="changed elsewhere")
    async with store.transaction(lease.task_id, lease) as tx:
        tx.update_step(1, "s1", status=StepStatus.RUNNING, started_at=tx.now)
        tx.emit(StepStarted(step_id="s1", resumed=False))
    task = await store.get_task(lease.task_id)
    assert task.revision_feedback == "changed elsewhere"  # not overwritten by the holder's write
    assert (await store.events_after(lease.task_id, task.last_seq - 1))[0].type == EventType.STEP_STARTED
    steps = {step.step_id: step.status for step in await store.steps(lease.task_id, 1)}
    assert steps["s1"] == StepStatus.RUNNING


async def test_one_holders_concurrent_transactions_all_commit_in_order_without_gaps(store: TaskStore) -> None:
    lease = await _executing(store)
    start = (await store.get_task(lease.task_id)).last_seq

    async def write(i: int) -> None:
        async with store.transaction(lease.task_id, lease) as tx:
            tx.emit(TextDelta(step_id="s1", text=str(i)))
            await anyio.lowlevel.checkpoint()  # let the others queue up behind this one
            tx.emit(TextDelta(step_id="s1", text=f"{i} second"))

    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(write, i)
    events = await store.events_after(lease.task_id, start)
    assert [e.seq for e in events] == list(range(start + 1, start + 21))
    assert all(f"{events[k].data['text']} second" == events[k + 1].data["text"] for k in range(0, 20, 2))


async def test_a_holder_keeps_no_view_after_its_lease_ends(store: TaskStore) -> None:
    lease = await _executing(store)
    async with store.transaction(lease.task_id, lease) as tx:
        tx.transition(TaskStatus.COMPLETED, result={"summary": "done"})
        tx.emit(TaskCompleted(summary="done"))
    assert not store.views.holds(lease)


# -- PostgreSQL: the one function call --------------------------------------------------------


@pytest.fixture
def pg_store(store: TaskStore) -> TaskStore:
    if not store.is_postgres:
        pytest.skip("agent_runtime_apply_v2 is PostgreSQL only")
    return store


class _Clock:
    """A fixed, advancing clock for ``rows.utcnow`` so two runs write identical timestamps."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(microseconds=1001)
        return self.now


async def _journal_run(store: TaskStore, lease: Lease, p: str) -> None:
    """Every kind of write a transaction can buffer, with edge values (None, JSON null, empty).
    Tool call ids start with ``p``."""
    task = lease.task_id
    async with store.transaction(task, lease) as tx:
        tx.update_step(1, "s1", status=StepStatus.RUNNING, started_at=tx.now)
        tx.emit(StepStarted(step_id="s1", resumed=False))
        tx.add_tool_call(
            call_id=f"{p}call_a",
            step_id="s1",
            turn=0,
            call_index=0,
            tool_name="x.y",
            arguments={"q": "ü", "n": [1, 2.5]},
        )
        tx.emit(ToolCallStarted(call_id="a", step_id="s1", tool="x.y", arguments={}, retry=False))
    async with store.transaction(task, lease) as tx:
        tx.update_tool_call(
            f"{p}call_a",
            status=ToolCallStatus.COMPLETED,
            result={"text": "ok", "structured": None},
            is_error=True,
            finished_at=tx.now,
        )
        tx.emit(
            ToolCallCompleted(
                call_id="a", step_id="s1", tool="x.y", is_error=True, result="ok", truncated=False, duration_ms=1.0
            )
        )
        tx.add_tool_call(
            call_id=f"{p}call_b",
            step_id="s1",
            turn=1,
            call_index=0,
            tool_name="x.z",
            arguments={},
            status=ToolCallStatus.REFUSED,
            result={"reason": "not allowed"},
        )
        tx.add_tool_call(
            call_id=f"{p}call_c", step_id="s1", turn=1, call_index=1, tool_name="x.y", arguments={"a": None}
        )
        tx.update_tool_call(
            f"{p}call_c", status=ToolCallStatus.STARTED, result=None, lease_epoch=lease.epoch, started_at=tx.now
        )
        tx.emit(TextDelta(step_id="s1", text="line\nwith 'quotes' and \"dq\" \\ and \u2603"))
        tx.update_step(1, "s1", status=StepStatus.COMPLETED, output="", finished_at=tx.now)
        tx.emit(StepCompleted(step_id="s1", output=""))
    async with store.transaction(task, lease) as tx:
        tx.update_step(1, "s2", status=StepStatus.FAILED, error={"code": "x", "message": "m"}, finished_at=tx.now)
        tx.update_step(1, "s2", error=None, output=None)
        tx.emit(StepFailed(step_id="s2", error=ErrorBody(code="x", message="m")))
    async with store.transaction(task) as tx:  # a command: "where" updates, an approval, a new plan
        tx.update_tool_calls_where({ToolCallStatus.STARTED}, status=ToolCallStatus.IN_DOUBT)
        tx.update_steps_where(1, {StepStatus.PENDING, StepStatus.FAILED}, status=StepStatus.SKIPPED)
        tx.add_approval(1, "edited", None, "why: \u2603")
        tx.add_plan_version(_plan(), "operator:x")
    async with store.transaction(task, lease) as tx:  # the final transition: task row fields, lease cleared
        tx.transition(TaskStatus.COMPLETED, result={"summary": "done", "steps": 2})
        tx.emit(TaskCompleted(summary="done"))


def _normalise(found: dict[str, list[dict[str, Any]]], task_id: str, p: str) -> dict[str, list[dict[str, Any]]]:
    def norm(v: Any) -> Any:
        if v == task_id:
            return "<task>"
        return v.removeprefix(p) if isinstance(v, str) else v

    return {name: [{k: norm(v) for k, v in row.items()} for row in table] for name, table in found.items()}


@asynccontextmanager
async def _sqlite_store(tmp: Any) -> AsyncIterator[TaskStore]:
    async with migrated_store("sqlite", tmp) as store:
        yield store


async def test_the_function_stores_exactly_what_sqlites_statements_store(
    pg_store: TaskStore, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_postgres()
    results = []
    async with _sqlite_store(tmp_path) as sqlite_store:
        for store, p in ((pg_store, "f_"), (sqlite_store, "s_")):
            monkeypatch.setattr(rows, "utcnow", _Clock())
            lease = await _executing(store)
            await _journal_run(store, lease, p)
            found = await _snapshot_of_rows(store, lease.task_id)
            found["approvals"] = [
                {k: v for k, v in r.items() if k != "id"} for r in await _table(store, t.approvals, lease.task_id)
            ]
            found["plan_versions"] = await _table(store, t.plan_versions, lease.task_id)
            results.append(_normalise(found, lease.task_id, p))
    pg, lite = results
    assert pg == lite
    assert len(pg["tool_calls"]) == 3 and len(pg["events"]) == 10 and len(pg["plan_versions"]) == 2
    calls = {r["id"]: r for r in pg["tool_calls"]}
    assert calls["call_a"]["result_is_sql_null"] is False
    assert calls["call_c"]["result"] is None and calls["call_c"]["result_is_sql_null"] is False  # JSON null
    assert calls["call_c"]["status"] == "in_doubt"
    assert [r["error_is_sql_null"] for r in pg["steps"] if r["plan_version"] == 1] == [True, False]


async def test_the_function_notifies_other_replicas(pg_store: TaskStore) -> None:
    lease = await _executing(pg_store)
    got: list[str] = []
    arrived = anyio.Event()

    def on_notify(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
        got.append(payload)
        arrived.set()

    listener = await asyncpg.connect(asyncpg_dsn(pg_store.engine.url.render_as_string(hide_password=False)))
    try:
        await listener.add_listener(NOTIFY_CHANNEL, on_notify)
        async with pg_store.transaction(lease.task_id, lease) as tx:
            tx.emit(TextDelta(step_id="s1", text="a"))
            tx.emit(TextDelta(step_id="s1", text="b"))
        with anyio.fail_after(5):
            await arrived.wait()
    finally:
        await listener.close()
    last = (await pg_store.get_task(lease.task_id)).last_seq
    assert [json.loads(g) for g in got] == [
        {"task": lease.task_id, "last": last, "n": 2, "work": False, "o": pg_store.origin}
    ]


async def test_a_refused_write_writes_nothing(pg_store: TaskStore) -> None:
    lease = await _executing(pg_store)
    async with pg_store.transaction(lease.task_id) as tx:  # cancelled elsewhere: the epoch moves on
        tx.update(lease_epoch=lease.epoch + 1)
    before = await _snapshot_of_rows(pg_store, lease.task_id)
    with pytest.raises(LeaseLostError):
        async with pg_store.transaction(lease.task_id, lease) as tx:
            tx.update_step(1, "s1", status=StepStatus.RUNNING, started_at=tx.now)
            tx.add_tool_call(call_id="call_x", step_id="s1", turn=0, call_index=0, tool_name="x.y", arguments={})
            tx.emit(ToolCallStarted(call_id="call_x", step_id="s1", tool="x.y", arguments={}, retry=False))
    assert await _snapshot_of_rows(pg_store, lease.task_id) == before
    assert not pg_store.views.holds(lease)


async def test_a_failing_write_rolls_back_everything(pg_store: TaskStore) -> None:
    lease = await _executing(pg_store)
    async with pg_store.transaction(lease.task_id, lease) as tx:
        tx.add_tool_call(call_id="call_dup", step_id="s1", turn=0, call_index=0, tool_name="x.y", arguments={})
    before = await _snapshot_of_rows(pg_store, lease.task_id)
    with pytest.raises(sa.exc.IntegrityError):
        async with pg_store.transaction(lease.task_id, lease) as tx:
            tx.update_step(1, "s1", status=StepStatus.RUNNING)
            tx.emit(StepStarted(step_id="s1", resumed=False))
            tx.add_tool_call(call_id="call_dup", step_id="s1", turn=0, call_index=1, tool_name="x.y", arguments={})
    assert await _snapshot_of_rows(pg_store, lease.task_id) == before


async def test_after_the_database_drops_its_connections_at_most_one_write_fails_and_none_is_doubled(
    pg_store: TaskStore,
) -> None:
    lease = await _executing(pg_store)
    for i in range(3):  # fill the pool with a few connections
        async with pg_store.transaction(lease.task_id, lease) as tx:
            tx.emit(TextDelta(step_id="s1", text=str(i)))
    admin = await asyncpg.connect(asyncpg_dsn(pg_store.engine.url.render_as_string(hide_password=False)))
    try:
        await admin.fetch(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await admin.close()
    outcomes = []
    for i in range(3, 6):
        try:
            async with pg_store.transaction(lease.task_id, lease) as tx:
                tx.emit(TextDelta(step_id="s1", text=str(i)))
            outcomes.append("ok")
        except sa.exc.DBAPIError:
            outcomes.append("failed")
    assert outcomes.count("failed") <= 1 and outcomes[-1] == "ok"
    deltas = [e for e in await pg_store.events_after(lease.task_id, 0) if e.type == "text_delta"]
    written = [int(e.data["text"]) for e in deltas]
    assert written == sorted(set(written)) and {0, 1, 2, 5} <= set(written)
    assert [e.seq for e in deltas] == list(range(deltas[0].seq, deltas[0].seq + len(deltas)))


async def test_the_migration_replaces_the_old_function_with_v2(pg_store: TaskStore) -> None:
    async with pg_store.engine.connect() as conn:
        found = await conn.exec_driver_sql(
            "SELECT proname FROM pg_proc WHERE proname LIKE 'agent_runtime_apply%' ORDER BY proname"
        )
        assert [r[0] for r in found] == ["agent_runtime_apply_v2"]


# -- the document ----------------------------------------------------------------------------


def test_the_function_sets_exactly_the_columns_the_document_may_carry() -> None:
    migration = importlib.import_module("agent_runtime.store.migrations.versions.0009_profiles_sessions")
    assert migration.TASK_COLUMNS == pg_document.TASK_KINDS
    assert migration.STEP_COLUMNS == pg_document.STEP_KINDS
    assert migration.CALL_COLUMNS == pg_document.CALL_KINDS
    assert migration.NEW_CALL_COLUMNS == pg_document.NEW_CALL_KINDS


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"output": 5}, "steps.output"),  # not text
        ({"position": 1.5}, "steps.position"),  # not an integer
        ({"position": True}, "steps.position"),  # bool is not an integer here
        ({"started_at": datetime(2026, 1, 1)}, "steps.started_at"),  # naive timestamp  # noqa: DTZ001
        ({"error": {"at": datetime(2026, 1, 1, tzinfo=UTC)}}, "not JSON serializable"),
        ({"error": {"x": float("nan")}}, "not JSON"),
        ({"no_such_column": 1}, "steps.no_such_column"),
    ],
)
def test_a_value_the_document_cannot_carry_exactly_is_refused_naming_it(fields: dict[str, Any], named: str) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    task = TaskRecord(
        id="task_1", status=TaskStatus.EXECUTING, prompt="p", metadata={}, created_at=now, updated_at=now,
        current_plan_version=1, approved_plan_version=1, result=None, error=None, revision_feedback=None,
        lease_owner="w", lease_expires_at=None, lease_epoch=1, last_seq=3,
    )  # fmt: skip
    tx = TaskTx(task, now)
    tx.update_step(1, "s1", **fields)
    lease = Lease(task_id="task_1", owner="w", epoch=1, status=TaskStatus.EXECUTING, last_seq=3)
    with pytest.raises(TypeError, match=named):
        pg_document.document(tx, lease, None)
