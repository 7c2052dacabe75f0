"""Core service benchmark (SQLite): latency, per-step orchestration overhead, throughput, memory.

    uv run python bench/bench_core.py            # full run
    uv run python bench/bench_core.py --quick    # fewer samples, shorter windows
    uv run python bench/bench_core.py --only store,steps --profile

Prints a table and writes bench/results/core.json. Figures are measured on every run; nothing is
hard-coded. What runs where:

* store costs and per-step overhead run in this process on the real runtime (``build_runtime`` +
  ``serve_background``: SQLite store, event bus, runner), no HTTP, on uvloop;
* latency and throughput go through HTTP + SSE to the real app served by uvicorn on 127.0.0.1 in a
  child process (``core_service.py serve``), one per tool (``--http-tools``, both by default), with
  ``http_client.py`` clients in this process (HTTP/1.1 keep-alive and SSE on asyncio streams: the
  clients share the 2 cores with the service, and httpx + httpx-sse cost ~7 ms of CPU per task);
* memory is measured in a fresh child process (``core_service.py memory``).

The LLM is ``core_rig.zero_llm()`` (``agent_runtime.testing.ScriptedModel`` in process: a fixed plan,
no I/O); the tool is the example MCP server's ``echo`` called in process through
``mcp.Client(server_object)`` ("mcp"), or a plain function ("function").
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import aiosqlite
import anyio
import psutil
import sqlalchemy as sa

from agent_runtime.domain.events import Event, EventType, TextDelta
from agent_runtime.domain.states import TaskStatus
from agent_runtime.logging import configure_logging
from agent_runtime.runtime import Overrides, Runtime, build_runtime, serve_background, stop_runtime
from agent_runtime.settings import ServerSettings
from agent_runtime.store import schema
from agent_runtime.store.sqlite import SqliteStore
from agent_runtime.store.store import TaskStore

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # runnable as ``python bench/<script>.py``
    sys.path.insert(0, str(REPO_ROOT))

from bench.core_rig import (  # noqa: E402
    REPO,
    ToolKind,
    bench_settings,
    build_bench_runtime,
    in_process_tools,
    until,
    zero_llm,
)
from bench.http_client import EventStream, HttpClient  # noqa: E402
from bench.stats import summary  # noqa: E402

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results" / "core.json"
PROMPT = "Echo a greeting for the benchmark."

TARGETS = {
    "submit_to_awaiting_approval_p50_ms": ("<=", 25.0),
    "approve_to_step_started_p50_ms": ("<=", 10.0),
    "overhead_per_step_ms": ("<=", 1.0),
    "tasks_per_second": (">=", 150.0),
    "tasks_per_second_in_process": (">=", 150.0),
    "rss_growth_mb_10k_awaiting": ("<=", 20.0),
}


@dataclass(frozen=True)
class Budget:
    """How much to measure (the full run and ``--quick``)."""

    store_ops: int
    latency_samples: int
    step_runs: int
    window_seconds: float
    clients: tuple[int, ...]
    memory_tasks: int
    memory_seconds: float


FULL = Budget(
    store_ops=300,
    latency_samples=100,
    step_runs=5,
    window_seconds=8.0,
    clients=(1, 8, 32),
    memory_tasks=10_000,
    memory_seconds=60,
)
QUICK = Budget(
    store_ops=100,
    latency_samples=30,
    step_runs=2,
    window_seconds=3.0,
    clients=(1, 8, 32),
    memory_tasks=2_000,
    memory_seconds=40,
)


# -- small helpers -------------------------------------------------------------------------------------


class RoundTrips:
    """Counts aiosqlite worker-thread round trips (``Connection._execute``) in this process."""

    count = 0

    @classmethod
    def install(cls) -> None:
        original = aiosqlite.core.Connection._execute

        async def counted(self: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
            cls.count += 1
            return await original(self, fn, *args, **kwargs)  # type: ignore[no-untyped-call]

        aiosqlite.core.Connection._execute = counted  # type: ignore[method-assign]


@dataclass
class Transactions:
    """Counts, on the store's engines, write transactions (BEGIN IMMEDIATE) and SQL statements."""

    writes: int = 0
    statements: int = 0

    def watch(self, store: TaskStore) -> None:
        """Both engines: the async one (migrations) and the synchronous one the store's I/O runs on."""

        def on_begin(conn: Any) -> None:
            if conn.get_execution_options().get("sqlite_begin") == "IMMEDIATE":
                self.writes += 1

        def on_statement(_sql: str) -> None:
            self.statements += 1

        def on_connect(dbapi_connection: Any, _record: Any) -> None:
            # SQLite's own trace hook: it also sees the statements the store runs straight on
            # pysqlite (``store.prepared``), and BEGIN/COMMIT.
            dbapi_connection.set_trace_callback(on_statement)

        sa.event.listen(store.engine.sync_engine, "begin", on_begin)
        if isinstance(store, SqliteStore):
            sa.event.listen(store.sync_engine, "begin", on_begin)
            sa.event.listen(store.sync_engine, "connect", on_connect)
            driver = store.loop_connection().connection.driver_connection
            if driver is not None:
                on_connect(driver, None)


@dataclass(frozen=True)
class Snapshot:
    """Counters at one moment, to subtract."""

    wall: float
    cpu: float
    trips: int
    writes: int
    statements: int

    @classmethod
    def take(cls, txs: Transactions) -> Snapshot:
        return cls(time.perf_counter(), time.thread_time(), RoundTrips.count, txs.writes, txs.statements)

    def since(self, before: Snapshot) -> dict[str, float]:
        return {
            "wall_ms": (self.wall - before.wall) * 1000,
            "loop_cpu_ms": (self.cpu - before.cpu) * 1000,
            "aiosqlite_round_trips": float(self.trips - before.trips),
            "write_transactions": float(self.writes - before.writes),
            "sql_statements": float(self.statements - before.statements),
        }


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- 0. raw store costs --------------------------------------------------------------------------------


async def bench_store(tmp: Path, ops: int) -> dict[str, Any]:
    """Per-operation cost of the store primitives the runtime is built from."""
    runtime = await build_runtime(bench_settings(tmp), Overrides(planner_llm=zero_llm(1), executor_llm=zero_llm(1)))
    store = runtime.store
    try:
        task = await store.create_task(PROMPT, {})
        [lease] = await store.claim("bench", (TaskStatus.QUEUED,), limit=1, lease_seconds=600)

        async def fenced() -> None:
            async with store.transaction(task.id, lease) as tx:
                tx.emit(TextDelta(step_id="s1", text="x"))

        async def create() -> None:
            await store.create_task(PROMPT, {})

        async def get() -> None:
            await store.get_task(task.id)

        async def empty_claim() -> None:
            await store.claim("bench", (TaskStatus.APPROVED, TaskStatus.EXECUTING), limit=8, lease_seconds=10)

        ops_list: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("fenced_tx_one_event", fenced),
            ("create_task", create),
            ("get_task", get),
            ("claim_nothing_to_claim", empty_claim),
        ]
        out: dict[str, Any] = {}
        for name, fn in ops_list:
            out[name] = await _time_op(fn, ops)
        out["aiosqlite_round_trip_select_1"] = await _raw_round_trip(tmp / "raw.sqlite", ops)
        out["what_if_fenced_tx_in_one_thread_hop"] = await _one_hop_transaction(tmp / "one-hop.sqlite", ops)
    finally:
        await runtime.store.engine.dispose()
    return out


async def _time_op(fn: Callable[[], Awaitable[None]], ops: int) -> dict[str, float]:
    for _ in range(max(10, ops // 10)):
        await fn()
    samples: list[float] = []
    trips = RoundTrips.count
    started, cpu, process_cpu = time.perf_counter(), time.thread_time(), time.process_time()
    for _ in range(ops):
        t0 = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - t0) * 1000)
    elapsed, cpu = time.perf_counter() - started, time.thread_time() - cpu
    process_cpu = time.process_time() - process_cpu
    return {
        **summary(samples),
        "per_second": ops / elapsed,
        "loop_cpu_ms": cpu * 1000 / ops,
        "process_cpu_ms": process_cpu * 1000 / ops,
        "aiosqlite_round_trips": (RoundTrips.count - trips) / ops,
    }


async def _raw_round_trip(path: Path, ops: int) -> dict[str, float]:
    """One aiosqlite ``execute`` of ``SELECT 1`` (no SQLAlchemy): the floor for every statement."""
    async with aiosqlite.connect(path, isolation_level=None) as db:

        async def select_1() -> None:
            await db.execute("SELECT 1")

        result = await _time_op(select_1, ops)
    result.pop("aiosqlite_round_trips")
    return result


async def _one_hop_transaction(path: Path, ops: int) -> dict[str, float]:
    """What-if, not the service's code: the fenced transaction's statements (lock-read the task row,
    fenced task update, event insert, commit) with synchronous SQLAlchemy Core on the stdlib sqlite3
    driver, the whole transaction run in one worker-thread hop (``anyio.to_thread.run_sync``)."""
    engine = sa.create_engine(f"sqlite:///{path}")

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=30000", "foreign_keys=ON"):
            dbapi_connection.execute(f"PRAGMA {pragma}")

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    schema.metadata.create_all(engine)
    now = datetime.now(UTC)
    task_id = "task_one_hop"
    with engine.begin() as conn:
        conn.execute(
            schema.tasks.insert().values(
                id=task_id,
                status="executing",
                prompt=PROMPT,
                metadata={},
                created_at=now,
                updated_at=now,
                lease_epoch=1,
                last_seq=0,
            )
        )

    def transaction() -> None:
        with engine.begin() as conn:
            row = conn.execute(sa.select(schema.tasks).where(schema.tasks.c.id == task_id)).mappings().one()
            seq = row["last_seq"] + 1
            stamp = datetime.now(UTC)
            conn.execute(
                schema.tasks.update()
                .where(schema.tasks.c.id == task_id, schema.tasks.c.lease_epoch == 1)
                .values(last_seq=seq, updated_at=stamp)
            )
            conn.execute(
                schema.events.insert(),
                [{"task_id": task_id, "seq": seq, "type": "text_delta", "data": {"text": "x"}, "created_at": stamp}],
            )

    async def one_hop() -> None:
        await anyio.to_thread.run_sync(transaction)

    try:
        result = await _time_op(one_hop, ops)
    finally:
        engine.dispose()
    result.pop("aiosqlite_round_trips")
    return result


# -- 3. per-step orchestration overhead ---------------------------------------------------------------


async def bench_steps(
    tmp: Path, steps: int, runs: int, kind: ToolKind, profiler: cProfile.Profile | None = None
) -> dict[str, Any]:
    """Execute a ``steps``-step plan (one tool call per step) ``runs`` times after one warm-up run.

    ``profiler`` (if given) runs from each measured approval to that task's completion.
    """
    settings = bench_settings(tmp)
    llm = zero_llm(steps)
    catalog, pool = await in_process_tools(kind, settings, tmp / "notes")
    execute_seconds: dict[str, tuple[float, float]] = {}
    runtime = await build_bench_runtime(settings, llm, catalog, pool, execute_seconds=execute_seconds)
    txs = Transactions()
    txs.watch(runtime.store)
    rows: list[dict[str, float]] = []
    whole: list[dict[str, float]] = []
    async with anyio.create_task_group() as tg:
        await serve_background(runtime, tg)
        await runtime.catalog.wait_settled()  # as before: measure once the catalogue is known
        try:
            for run in range(runs + 1):
                submitted = Snapshot.take(txs)
                task = await runtime.tasks.submit(PROMPT, None)
                sub = runtime.bus.subscribe(task.id, after=task.last_seq)
                seen: dict[str, Event] = {}
                try:
                    required = await until(sub, EventType.APPROVAL_REQUIRED, seen=seen)
                    llm0, call0, session0 = llm.seconds, pool.clock.call_seconds, pool.clock.session_seconds
                    approved = Snapshot.take(txs)
                    if profiler is not None and run > 0:
                        profiler.enable()
                    await runtime.tasks.approve(task.id, int(required.data["plan_version"]), "bench")
                    done = await until(sub, EventType.TASK_COMPLETED, seen=seen)
                finally:
                    if profiler is not None:
                        profiler.disable()
                    runtime.bus.unsubscribe(sub)
                await _runner_idle(runtime)  # the claims that follow a finished job belong to this task
                finished = Snapshot.take(txs)
                if run == 0:
                    continue  # warm-up
                wall, cpu = execute_seconds[task.id]
                llm_s = llm.seconds - llm0
                call_s = pool.clock.call_seconds - call0
                session_s = pool.clock.session_seconds - session0
                overhead = wall - llm_s - call_s - session_s
                execution = finished.since(approved)
                rows.append(
                    {
                        "execute_wall_ms": wall * 1000,
                        "llm_ms": llm_s * 1000,
                        "tool_call_ms": call_s * 1000,
                        "tool_session_ms": session_s * 1000,
                        "overhead_ms": overhead * 1000,
                        "overhead_per_step_ms": overhead * 1000 / steps,
                        "execute_loop_cpu_ms": cpu * 1000,
                        "overhead_cpu_per_step_ms": (cpu - llm_s - call_s - session_s) * 1000 / steps,
                        "events": float(done.seq - required.seq),
                        "round_trips_per_step": execution["aiosqlite_round_trips"] / steps,
                        "write_transactions_per_step": execution["write_transactions"] / steps,
                    }
                )
                gaps = {
                    f"{a}->{b}_ms": (
                        seen[b].created_at - (task.created_at if a == "task_created" else seen[a].created_at)
                    ).total_seconds()
                    * 1000
                    for a, b in EVENT_GAPS
                }
                whole.append({**finished.since(submitted), **gaps})
        finally:
            await stop_runtime(runtime)
            tg.cancel_scope.cancel()
    return {
        "steps": steps,
        "runs": runs,
        "tool": kind,
        "median": _medians(rows),
        "task_median": _medians(whole),
        "runs_detail": rows,
    }


EVENT_GAPS = [
    ("task_created", "planning_started"),
    ("planning_started", "approval_required"),
    ("task_approved", "execution_started"),
    ("execution_started", "step_started"),
    ("step_started", "step_completed"),
    ("step_completed", "task_completed"),
]
"""Gaps between event timestamps (each is its transaction's start time) in a whole task."""


def _medians(rows: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in rows) for key in rows[0]}


async def _runner_idle(runtime: Runtime) -> None:
    """Let the runner finish the claim round that a finished job triggers (not timed; 50 ms is ample)."""
    await anyio.sleep(0.05)
    if runtime.runner.active():
        raise RuntimeError("the runner is still busy 50 ms after the task completed")


async def bench_inproc_throughput(tmp: Path, clients: tuple[int, ...], seconds: float) -> list[dict[str, float]]:
    """Tasks/s of the service itself: ``k`` concurrent drivers, each looping submit -> wait for
    ``approval_required`` -> approve -> wait for ``task_completed`` through ``TaskService`` and the
    event bus (what the HTTP handlers call), one-step plans with one tool call: a plain in-process
    function, then the example MCP server in process (``mcp.Client`` over memory streams).
    No HTTP: this is the orchestration's own capacity (runner, store, journal, tools, bus)."""
    out: list[dict[str, Any]] = []
    for kind in ("function", "mcp"):
        for k in clients:
            (tmp / f"{kind}-k{k}").mkdir()
            row = await _inproc_run(tmp / f"{kind}-k{k}", k, seconds, kind)
            _log(
                f"  {kind} tool, {k} drivers: {row['tasks_per_second']:.1f} tasks/s, "
                f"{row['cpu_ms_per_task']:.2f} ms CPU"
            )
            out.append(row)
    return out


async def _inproc_run(tmp: Path, k: int, seconds: float, kind: ToolKind) -> dict[str, Any]:
    settings = bench_settings(tmp)
    catalog, pool = await in_process_tools(kind, settings, tmp / "notes")
    runtime = await build_bench_runtime(settings, zero_llm(1), catalog, pool)
    done: list[float] = []
    stop = anyio.Event()

    async def driver() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            task = await runtime.tasks.submit(PROMPT, None)
            sub = runtime.bus.subscribe(task.id, after=task.last_seq)
            try:
                # Like the SSE endpoint: what was committed before the subscription is in the store.
                for event in await runtime.store.events_after(task.id, task.last_seq):
                    sub.push(event)
                required = await until(sub, EventType.APPROVAL_REQUIRED)
                await runtime.tasks.approve(task.id, int(required.data["plan_version"]), "bench")
                await until(sub, EventType.TASK_COMPLETED)
            finally:
                runtime.bus.unsubscribe(sub)
            done.append(time.perf_counter() - started)

    async with anyio.create_task_group() as tg:
        await serve_background(runtime, tg)
        await runtime.catalog.wait_settled()  # as before: measure once the catalogue is known
        try:
            async with anyio.create_task_group() as drivers:
                for _ in range(k):
                    drivers.start_soon(driver)
                await anyio.sleep(1.0)  # warm-up
                first, cpu0, wall0 = len(done), time.process_time(), time.perf_counter()
                await anyio.sleep(seconds)
                count, cpu, wall = len(done) - first, time.process_time() - cpu0, time.perf_counter() - wall0
                latencies = [x * 1000 for x in done[first:]]
                stop.set()
        finally:
            await stop_runtime(runtime)
            tg.cancel_scope.cancel()
    return {
        "tool": kind,
        "clients": float(k),
        "tasks": float(count),
        "tasks_per_second": count / wall,
        "cpu_ms_per_task": cpu * 1000 / max(count, 1),
        "cpu_use": cpu / wall,
        "end_to_end_p50_ms": statistics.median(latencies) if latencies else float("nan"),
    }


# -- 1, 2, 4. HTTP: latency and throughput -----------------------------------------------------------


HTTP_TOOLS: tuple[ToolKind, ...] = ("mcp", "function")
"""The tools the HTTP section serves with by default (``--http-tools``), one service process each."""


@dataclass
class Flow:
    """One task driven by a client: submit, wait for approval_required, approve, wait for completion."""

    submit_ms: float
    submit_server_ms: float
    approve_ms: float
    approve_server_ms: float
    total_ms: float


class EventReader:
    """Reads one task's SSE stream; remembers the last payload of each event type."""

    def __init__(self, events: EventStream) -> None:
        self._events = events
        self.seen: dict[str, dict[str, Any]] = {}

    async def until(self, event_type: str) -> dict[str, Any]:
        async for sse in self._events:
            payload: dict[str, Any] = json.loads(sse.data)
            self.seen[sse.event] = payload
            if sse.event == event_type:
                return payload
            if sse.event in ("task_failed", "task_cancelled", "task_rejected"):
                raise RuntimeError(f"task ended with {sse.event}: {payload.get('data')}")
        raise RuntimeError(f"stream ended before {event_type}")


def _server_ms(start: dict[str, Any], end: dict[str, Any]) -> float:
    delta = datetime.fromisoformat(end["created_at"]) - datetime.fromisoformat(start["created_at"])
    return delta.total_seconds() * 1000


async def run_flow(client: HttpClient) -> Flow:
    t0 = time.perf_counter()
    created = await client.request("POST", "/v1/tasks", json_body={"prompt": PROMPT}, expect=(202,))
    task_id = created.json()["id"]
    async with client.events(f"/v1/tasks/{task_id}/stream") as source:
        reader = EventReader(source)
        required = await reader.until("approval_required")
        t1 = time.perf_counter()
        step_seen: list[float] = []

        async def watch() -> None:
            await reader.until("step_started")
            step_seen.append(time.perf_counter())

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            t2 = time.perf_counter()
            await client.request(
                "POST",
                f"/v1/tasks/{task_id}/approve",
                json_body={"plan_version": required["data"]["plan_version"]},
                expect=(202,),
            )
        await reader.until("task_completed")
        t3 = time.perf_counter()
        after = await source.finish()  # the server ends the stream after the terminal event
        if after:
            raise RuntimeError(f"events after task_completed: {[e.event for e in after]}")
    seen = reader.seen
    return Flow(
        submit_ms=(t1 - t0) * 1000,
        submit_server_ms=_server_ms(seen["task_created"], seen["approval_required"]),
        approve_ms=(step_seen[0] - t2) * 1000,
        approve_server_ms=_server_ms(seen["task_approved"], seen["step_started"]),
        total_ms=(t3 - t0) * 1000,
    )


@asynccontextmanager
async def child_service(
    tmp: Path, profile: Path | None, tool: ToolKind = "mcp"
) -> AsyncIterator[tuple[str, psutil.Process]]:
    """Start ``core_service.py serve --tool TOOL`` and yield its base URL and process; stop it with SIGINT."""
    command = [sys.executable, str(BENCH / "core_service.py"), "serve", "--dir", str(tmp), "--tool", tool]
    if profile is not None:
        command += ["--profile", str(profile)]
    log_path = tmp / "service.stderr"
    with log_path.open("w") as stderr:
        async with await anyio.open_process(command, stdout=subprocess.PIPE, stderr=stderr, cwd=REPO) as proc:
            try:
                assert proc.stdout is not None
                line = b""
                with anyio.fail_after(120):
                    while not line.endswith(b"\n"):
                        try:
                            line += await proc.stdout.receive()
                        except anyio.EndOfStream:
                            raise RuntimeError(
                                "bench service exited at start: " + log_path.read_text()[-2000:]
                            ) from None
                port = json.loads(line)["port"]
                yield f"http://127.0.0.1:{port}", psutil.Process(proc.pid)
            finally:
                if proc.returncode is None:
                    proc.send_signal(signal.SIGINT)
                    with anyio.move_on_after(30, shield=True):
                        await proc.wait()
                    if proc.returncode is None:
                        proc.kill()


async def bench_http(
    tmp: Path, plan: Budget, profile_dir: Path | None, tools: tuple[ToolKind, ...] = HTTP_TOOLS
) -> dict[str, Any]:
    """Latency (with the first of ``tools``) and throughput (with each) over HTTP + SSE, one service
    process per tool."""
    me = psutil.Process()
    latency: dict[str, Any] = {}
    throughput: list[dict[str, Any]] = []
    for tool in tools:
        (tmp / tool).mkdir()
        profile = profile_dir / f"server-{tool}.prof" if profile_dir else None
        async with child_service(tmp / tool, profile, tool) as (url, server), HttpClient(url, timeout=60) as client:
            for _ in range(10):  # warm-up: first requests build caches on both sides
                await run_flow(client)
            if not latency:
                _log(f"  {tool} tool: latency: {plan.latency_samples} sequential tasks")
                flows = [await run_flow(client) for _ in range(plan.latency_samples)]
                latency = {
                    "tool": tool,
                    "submit_to_awaiting_approval_client_ms": summary([f.submit_ms for f in flows]),
                    "submit_to_awaiting_approval_server_ms": summary([f.submit_server_ms for f in flows]),
                    "approve_to_step_started_client_ms": summary([f.approve_ms for f in flows]),
                    "approve_to_step_started_server_ms": summary([f.approve_server_ms for f in flows]),
                    "end_to_end_ms": summary([f.total_ms for f in flows]),
                }
            for clients in plan.clients:
                _log(f"  {tool} tool: throughput: {clients} concurrent clients for {plan.window_seconds:g} s")
                row = await _throughput(client, clients, plan.window_seconds, server, me)
                throughput.append({"tool": tool, **row, "connections_opened": client.connections_opened})
    client_kind = "bench/http_client.py: HTTP/1.1 keep-alive connections and SSE on asyncio streams"
    return {"client": client_kind, "latency": latency, "throughput": throughput}


async def _throughput(
    client: HttpClient, clients: int, window: float, server: psutil.Process, me: psutil.Process
) -> dict[str, Any]:
    flows: list[Flow] = []
    deadline = time.perf_counter() + window

    async def loop() -> None:
        while time.perf_counter() < deadline:
            flows.append(await run_flow(client))

    server_cpu0, client_cpu0 = _cpu(server), _cpu(me)
    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(clients):
            tg.start_soon(loop)
    elapsed = time.perf_counter() - started
    server_cpu, client_cpu = _cpu(server) - server_cpu0, _cpu(me) - client_cpu0
    return {
        "clients": clients,
        "tasks": len(flows),
        "seconds": elapsed,
        "tasks_per_second": len(flows) / elapsed,
        "end_to_end_ms": summary([f.total_ms for f in flows]),
        "server_cpu_ms_per_task": server_cpu * 1000 / max(1, len(flows)),
        "server_cpu_utilisation": server_cpu / elapsed,
        "client_cpu_ms_per_task": client_cpu * 1000 / max(1, len(flows)),
    }


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


# -- 5. memory -----------------------------------------------------------------------------------------


async def bench_memory(tmp: Path, tasks: int, seconds: float) -> dict[str, Any]:
    command = [
        sys.executable, str(BENCH / "core_service.py"), "memory", "--dir", str(tmp),
        "--tasks", str(tasks), "--seconds", str(seconds),
    ]  # fmt: skip
    log_path = tmp / "memory.stderr"
    with log_path.open("w") as stderr:
        async with await anyio.open_process(command, stdout=subprocess.PIPE, stderr=stderr, cwd=REPO) as proc:
            assert proc.stdout is not None
            out = b""
            try:
                with anyio.fail_after(seconds + 180):  # budget + start-up, warm-up, the last chunk, shutdown
                    while not out.endswith(b"\n"):
                        out += await proc.stdout.receive()
            except anyio.EndOfStream:
                raise RuntimeError("memory probe failed: " + log_path.read_text()[-2000:]) from None
            exit_hung = False
            with anyio.move_on_after(20):
                await proc.wait()
            if proc.returncode is None:
                exit_hung = True  # the result is in; the process did not exit (see leftover tasks)
                proc.kill()
    data: dict[str, Any] = json.loads(out)
    data["exit_hung"] = exit_hung
    reached = data["tasks"]
    data["rss_growth_mb"] = data["rss_growth_bytes"] / 2**20
    data["rss_growth_per_task_bytes"] = data["rss_growth_bytes"] / reached
    data["rss_growth_mb_per_10k"] = data["rss_growth_mb"] * 10_000 / reached
    data["scaled_to_10k"] = reached < 10_000
    return data


# -- report --------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": list(os.getloadavg()),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "sqlite": aiosqlite.sqlite_version,
        **_git(),
    }


def _git() -> dict[str, Any]:
    """The commit measured, and whether ``src/`` had uncommitted changes (which were measured too)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "src"], cwd=REPO, capture_output=True, text=True)
    except OSError:
        return {}
    return {"commit": head.stdout.strip(), "src_uncommitted_changes": bool(dirty.stdout.strip())}


def headline(results: dict[str, Any]) -> dict[str, float]:
    """The figures compared with the targets (only those that were measured)."""
    out: dict[str, float] = {}
    if "http" in results:
        lat = results["http"]["latency"]
        out["submit_to_awaiting_approval_p50_ms"] = lat["submit_to_awaiting_approval_client_ms"]["p50"]
        out["approve_to_step_started_p50_ms"] = lat["approve_to_step_started_client_ms"]["p50"]
        out["tasks_per_second"] = max(t["tasks_per_second"] for t in results["http"]["throughput"])
    if "inproc" in results:
        out["tasks_per_second_in_process"] = max(t["tasks_per_second"] for t in results["inproc"])
    if "steps" in results:
        out["overhead_per_step_ms"] = results["steps"]["mcp_20"]["median"]["overhead_per_step_ms"]
    if "memory" in results:
        out["rss_growth_mb_10k_awaiting"] = results["memory"]["rss_growth_mb_per_10k"]
    return out


def verdicts(figures: dict[str, float]) -> dict[str, dict[str, Any]]:
    out = {}
    for key, value in figures.items():
        op, target = TARGETS[key]
        met = value <= target if op == "<=" else value >= target
        out[key] = {"measured": value, "target": f"{op} {target:g}", "met": met}
    return out


def render(results: dict[str, Any]) -> str:
    lines: list[str] = []
    add = lines.append
    m = results["machine"]
    add(
        f"machine: {m['nproc']} cores, Python {m['python']}, SQLite {m['sqlite']}, "
        f"load average at start {m['loadavg_at_start'][0]:.2f}, at end {results['loadavg_at_end'][0]:.2f}; "
        f"commit {m.get('commit', '?')}{' + uncommitted src changes' if m.get('src_uncommitted_changes') else ''}"
    )
    add(f"mode: {results['mode']}")
    if "store" in results:
        add("")
        add(
            "| store operation (SQLite, in process) | min ms | p50 ms | p95 ms | ops/s | loop CPU ms/op "
            "| process CPU ms/op | aiosqlite round trips |"
        )
        add("|---|---|---|---|---|---|---|---|")
        for name, s in results["store"].items():
            trips = s.get("aiosqlite_round_trips")
            add(
                f"| {name} | {s['min']:.3f} | {s['p50']:.3f} | {s['p95']:.3f} | {s['per_second']:.0f} | "
                f"{s['loop_cpu_ms']:.3f} | {s['process_cpu_ms']:.3f} | {'' if trips is None else f'{trips:.0f}'} |"
            )
    if "steps" in results:
        add("")
        add(
            "| execution, median of runs (in process) | wall ms | LLM ms | tool calls ms | tool session ms "
            "| overhead ms | overhead/step ms | loop CPU overhead/step ms | write tx/step | round trips/step |"
        )
        add("|---|---|---|---|---|---|---|---|---|---|")
        for s in results["steps"].values():
            if not isinstance(s, dict) or "median" not in s:
                continue
            md = s["median"]
            add(
                f"| {s['steps']} steps, {s['tool']} tool, {s['runs']} runs | {md['execute_wall_ms']:.1f} | "
                f"{md['llm_ms']:.2f} | {md['tool_call_ms']:.1f} | {md['tool_session_ms']:.1f} | "
                f"{md['overhead_ms']:.1f} | {md['overhead_per_step_ms']:.2f} | "
                f"{md['overhead_cpu_per_step_ms']:.2f} | {md['write_transactions_per_step']:.1f} | "
                f"{md['round_trips_per_step']:.0f} |"
            )
        if "marginal_overhead_per_step_ms" in results["steps"]:
            add(
                f"marginal overhead per extra step (20-step vs 1-step plan, mcp): "
                f"{results['steps']['marginal_overhead_per_step_ms']:.2f} ms"
            )
        one = results["steps"].get("mcp_1")
        if one:
            t = one["task_median"]
            add(
                f"one whole 1-step task in process (submit -> completed, no HTTP; median of {one['runs']}): "
                f"{t['wall_ms']:.1f} ms wall, {t['loop_cpu_ms']:.1f} ms event-loop CPU, "
                f"{t['write_transactions']:.0f} write transactions, {t['sql_statements']:.0f} SQL statements, "
                f"{t['aiosqlite_round_trips']:.0f} aiosqlite round trips"
            )
            add(
                "  where the time goes (medians between event timestamps, ms): "
                + ", ".join(f"{a} -> {b} {t[f'{a}->{b}_ms']:.1f}" for a, b in EVENT_GAPS)
            )
    if "inproc" in results:
        add("")
        add(
            "| tasks/s in process (no HTTP): tool, drivers | tasks | tasks/s | end-to-end p50 ms "
            "| CPU ms/task | CPU use |"
        )
        add("|---|---|---|---|---|---|")
        for t in results["inproc"]:
            add(
                f"| {t['tool']}, {t['clients']:.0f} | {t['tasks']:.0f} | {t['tasks_per_second']:.1f} | "
                f"{t['end_to_end_p50_ms']:.1f} | {t['cpu_ms_per_task']:.2f} | {t['cpu_use']:.0%} |"
            )
    if "http" in results:
        http = results["http"]
        latency = dict(http["latency"])
        tool = latency.pop("tool", "mcp")
        add("")
        add(f"| latency over HTTP + SSE (uvicorn child, {tool} tool, 1 client, sequential) | p50 ms | p95 ms | n |")
        add("|---|---|---|---|")
        for name, s in latency.items():
            add(f"| {name} | {s['p50']:.1f} | {s['p95']:.1f} | {s['n']} |")
        add("")
        add(
            "| tasks/s over HTTP + SSE: tool, concurrent clients | tasks | tasks/s | end-to-end p50 ms | p95 ms "
            "| server CPU ms/task | server CPU use | client CPU ms/task |"
        )
        add("|---|---|---|---|---|---|---|---|")
        for t in http["throughput"]:
            add(
                f"| {t.get('tool', 'mcp')}, {t['clients']} | {t['tasks']} | {t['tasks_per_second']:.1f} | "
                f"{t['end_to_end_ms']['p50']:.1f} | {t['end_to_end_ms']['p95']:.1f} | "
                f"{t['server_cpu_ms_per_task']:.1f} | {t['server_cpu_utilisation']:.0%} | "
                f"{t['client_cpu_ms_per_task']:.1f} |"
            )
        if "client" in http:
            add(f"client: {http['client']}")
    if "memory" in results:
        mem = results["memory"]
        reached = f"{mem['tasks']} tasks" + (
            f" (of {mem['tasks_requested']} asked; the {mem['time_budget_seconds']:g} s budget ran out)"
            if mem["scaled_to_10k"] and mem["tasks"] < mem["tasks_requested"]
            else ""
        )
        add("")
        add(
            f"memory (fresh process): {reached} to awaiting_approval: RSS "
            f"{mem['rss_before_bytes'] / 2**20:.1f} -> {mem['rss_after_bytes'] / 2**20:.1f} MiB "
            f"(+{mem['rss_growth_mb']:.1f} MiB, {mem['rss_growth_per_task_bytes']:.0f} B/task"
            + (f", {mem['rss_growth_mb_per_10k']:.1f} MiB per 10k by linear scaling" if mem["scaled_to_10k"] else "")
            + f"); Python objects {mem['python_objects_growth']:+d}; database {mem['db_bytes'] / 2**20:.1f} MiB; "
            f"created+planned in {mem['create_and_plan_seconds']:.1f} s"
        )
        add(
            "RSS growth by tasks created: " + ", ".join(f"{n}: {b / 2**20:.1f} MiB" for n, b in mem["rss_growth_curve"])
        )
    add("")
    add("| target | measured | target | met |")
    add("|---|---|---|---|")
    for key, v in results["targets"].items():
        add(f"| {key} | {v['measured']:.2f} | {v['target']} | {'yes' if v['met'] else 'NO'} |")
    return "\n".join(lines)


def print_profile(path: Path, title: str, limit: int = 25) -> None:
    """Top functions by own time, then the service's own functions by cumulative time."""
    if not path.exists():
        return
    print(f"\n--- cProfile: {title}: top {limit} by own time ---")
    stats = pstats.Stats(str(path))
    stats.sort_stats("tottime").print_stats(limit)
    print(f"--- cProfile: {title}: agent_runtime functions by cumulative time ---")
    stats.sort_stats("cumulative").print_stats("agent_runtime", limit)


# -- main ----------------------------------------------------------------------------------------------

SECTIONS = ("store", "steps", "inproc", "http", "memory")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    plan = QUICK if args.quick else FULL
    if args.memory_tasks:
        plan = Budget(**{**asdict(plan), "memory_tasks": args.memory_tasks})
    if args.memory_seconds:
        plan = Budget(**{**asdict(plan), "memory_seconds": args.memory_seconds})
    only = set(args.only.split(",")) if args.only else set(SECTIONS)
    results: dict[str, Any] = {
        "machine": machine(),
        "mode": "quick" if args.quick else "full",
        "plan": asdict(plan),
        "command": " ".join(["uv run python bench/bench_core.py", *sys.argv[1:]]),
        "llm": "core_rig.zero_llm: agent_runtime.testing.ScriptedModel in process, fixed plan and tool call, no I/O",
        "tool": "example MCP server 'echo', in process via mcp.Client(server_object); 'function' = plain function",
    }
    profile_dir = Path(tempfile.mkdtemp(prefix="bench-core-prof-")) if args.profile else None
    RoundTrips.install()
    with tempfile.TemporaryDirectory(prefix="bench-core-") as root:
        base = Path(root)
        if "store" in only:
            _log("store costs ...")
            (base / "store").mkdir()
            results["store"] = await bench_store(base / "store", plan.store_ops)
        if "steps" in only:
            steps: dict[str, Any] = {}
            variants: list[tuple[str, int, int, ToolKind]] = [
                ("mcp_20", 20, plan.step_runs, "mcp"),
                ("function_20", 20, plan.step_runs, "function"),
                ("mcp_1", 1, plan.step_runs * 4, "mcp"),
            ]
            for key, count, runs, kind in variants:
                _log(f"step overhead: {key} ...")
                (base / key).mkdir()
                profiler = cProfile.Profile() if profile_dir and key == "mcp_20" else None
                steps[key] = await bench_steps(base / key, count, runs, kind, profiler)
                if profiler is not None and profile_dir is not None:
                    profiler.dump_stats(profile_dir / f"steps-{key}.prof")
            one, twenty = steps["mcp_1"]["median"], steps["mcp_20"]["median"]
            steps["marginal_overhead_per_step_ms"] = (twenty["overhead_ms"] - one["overhead_ms"]) / 19
            results["steps"] = steps
        if "inproc" in only:
            _log("tasks/s in process (no HTTP) ...")
            (base / "inproc").mkdir()
            results["inproc"] = await bench_inproc_throughput(base / "inproc", plan.clients, plan.window_seconds)
        if "http" in only:
            _log(f"HTTP latency and throughput (uvicorn child process; {', '.join(args.http_tools)} tool) ...")
            (base / "http").mkdir()
            results["http"] = await bench_http(base / "http", plan, profile_dir, args.http_tools)
        if "memory" in only:
            _log(f"memory: {plan.memory_tasks} tasks to awaiting_approval in a fresh process ...")
            (base / "memory").mkdir()
            results["memory"] = await bench_memory(base / "memory", plan.memory_tasks, plan.memory_seconds)
    results["targets"] = verdicts(headline(results))
    results["loadavg_at_end"] = list(os.getloadavg())
    if profile_dir is not None:
        results["profiles"] = str(profile_dir)
    return results


def _tools(value: str) -> tuple[ToolKind, ...]:
    tools = tuple(t.strip() for t in value.split(",") if t.strip())
    unknown = [t for t in tools if t not in HTTP_TOOLS]
    if not tools or unknown:
        raise argparse.ArgumentTypeError(f"tools are {', '.join(HTTP_TOOLS)}; got {value!r}")
    return cast(tuple[ToolKind, ...], tools)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples, shorter windows, 2,000 tasks for memory")
    parser.add_argument("--only", help=f"comma-separated sections: {','.join(SECTIONS)}")
    parser.add_argument("--memory-tasks", type=int, help="tasks for the memory probe (default 10,000; quick 2,000)")
    parser.add_argument(
        "--memory-seconds", type=float, help="time budget of the memory probe (default 60 s; quick 40 s)"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="cProfile the 20-step run and the HTTP server; "
        "figures are then inflated by the profiler and not written to results",
    )
    parser.add_argument(
        "--http-tools",
        type=_tools,
        default=HTTP_TOOLS,
        help="comma-separated tools the HTTP section serves with, one service process each: "
        f"mcp (the example MCP server in process), function (a plain function); default {','.join(HTTP_TOOLS)}",
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    configure_logging(ServerSettings(log_level="warning"))  # the service's logging, quiet; to stderr
    started = time.perf_counter()
    results = anyio.run(run, args, backend_options={"use_uvloop": True})
    results["bench_seconds"] = time.perf_counter() - started
    print(render(results))
    print(f"\nbench took {results['bench_seconds']:.0f} s")
    if args.profile:
        prof = Path(results["profiles"])
        print_profile(prof / "steps-mcp_20.prof", "in-process 20-step execution")
        for tool in args.http_tools:
            print_profile(prof / f"server-{tool}.prof", f"uvicorn service process, {tool} tool (whole run)")
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"results written to {args.output.relative_to(REPO) if args.output.is_relative_to(REPO) else args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
