"""The rig for ``bench_core.py``: the real runtime with a 0 ms LLM and an in-process tool.

Everything the service does is the production code path (``build_runtime``: SQLite store in a temp
dir, event bus, runner, ``TaskJobs``, ``TaskService``, the FastAPI app). Three things are swapped:

* the LLM is :func:`zero_llm`, the scripted test model in process: a fixed plan and a fixed tool call
  without any I/O (it is not the service's offline test model, which builds plans from JSON schemas);
* the tool pool and catalogue handed to ``TaskJobs`` are :class:`InProcessPool` and
  :class:`InProcessCatalog`, which call the example MCP server in process through
  ``mcp.Client(server_object)`` (or, with ``kind="function"``, a plain Python function);
* the real ``ToolCatalog``/``ToolPool`` stay on the runtime with an empty registry, so start-up,
  readiness and ``/v1/tools`` behave as usual without starting a server process.

Each piece keeps a running total of the seconds spent inside it, so the driver can subtract LLM and
tool time from a task's execution wall time.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import anyio
from fastapi import FastAPI
from mcp import Client

from agent_runtime.agents.execution import ProgressHandler, StepTools
from agent_runtime.app import create_app
from agent_runtime.domain.events import Event
from agent_runtime.domain.plan import Plan, PlanStep
from agent_runtime.domain.records import Lease
from agent_runtime.errors import ToolNotAllowedError
from agent_runtime.llm.base import LLMClient
from agent_runtime.runtime import Overrides, Runtime, build_runtime, serve_background, stop_runtime
from agent_runtime.services.bus import Subscription
from agent_runtime.services.jobs import TaskJobs
from agent_runtime.services.runner import Runner
from agent_runtime.services.tasks import TaskService
from agent_runtime.settings import Settings, load_settings
from agent_runtime.testing import ScriptedLLM, ScriptedModel, ToolCalls
from agent_runtime.tools.base import ToolInfo, ToolResult, split_name
from agent_runtime.tools.convert import tool_info, tool_result
from agent_runtime.tools.workspace import Workspaces

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_SERVER = REPO / "examples" / "mcp_server" / "server.py"
TOOL = "example.echo"
ToolKind = Literal["mcp", "function"]


def bench_settings(tmp: Path, **sections: dict[str, Any]) -> Settings:
    """Production defaults except: SQLite in ``tmp``, an empty tool registry, up to 50 plan steps."""
    registry = tmp / "tool_registry.yaml"
    registry.write_text("servers: []\n")
    config = tmp / "config.yaml"
    config.write_text("{}\n")
    base: dict[str, dict[str, Any]] = {
        "database": {"url": f"sqlite+aiosqlite:///{tmp / 'db.sqlite'}"},
        "tools": {"registry_path": str(registry), "workspace_root": str(tmp / "workspaces")},
        "limits": {"max_steps_per_plan": 50},
        "llm": {"planner": {"provider": "offline"}, "executor": {"provider": "offline"}},
        "server": {"log_level": "warning"},
        # Unauthenticated, as before identity landed: the figures stay comparable. The key check
        # itself (a SHA-256 and a cached lookup per request) is not measured here yet.
        "auth": {"mode": "disabled"},
    }
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value}
    return load_settings(config, **base)


# -- the 0 ms LLM ------------------------------------------------------------------------------------


def zero_llm(steps: int, tool: str = TOOL) -> ScriptedLLM:
    """The scripted test model in process: plans ``steps`` steps, each allowed ``tool``; in a step,
    calls the tool once, then answers "done" without streaming it (no text_delta events, as before).

    No I/O and no sleeping: its own time (``.seconds``) is the cost of applying the rules.
    """
    plan = Plan(
        summary=f"echo {steps} times",
        steps=[
            # One after another: the per-step figures are about a step's own orchestration.
            PlanStep(
                id=f"s{i}",
                title=f"Echo {i}",
                instruction=f"Echo {i}.",
                tools=[tool],
                depends_on=[f"s{i - 1}"] if i > 1 else [],
            )
            for i in range(1, steps + 1)
        ],
    ).model_dump()
    calls: dict[str, ToolCalls] = {f"s{i}": [(tool, {"text": "bench"})] for i in range(1, steps + 1)}
    return ScriptedModel(plan, calls, step_text="done", summary_text="done", text_deltas=0).client()


# -- the in-process tool -----------------------------------------------------------------------------


def load_example_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_example_mcp_server", EXAMPLE_SERVER)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {EXAMPLE_SERVER}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class ToolClock:
    """Seconds spent in tool calls, and in opening/closing a task's tool sessions."""

    call_seconds: float = 0.0
    session_seconds: float = 0.0
    calls: int = 0


class _McpTools:
    """``StepTools`` over an open in-process MCP client."""

    def __init__(self, client: Client, allowed: set[str], clock: ToolClock) -> None:
        self._client = client
        self._allowed = allowed
        self._clock = clock

    async def call(
        self,
        qualified_name: str,
        arguments: dict[str, Any],
        *,
        timeout: float | None = None,
        on_progress: ProgressHandler | None = None,
    ) -> ToolResult:
        if qualified_name not in self._allowed:
            raise ToolNotAllowedError(f"{qualified_name} is not allowed")
        started = time.perf_counter()
        server, name = split_name(qualified_name)
        result = tool_result(server, name, await self._client.call_tool(name, arguments))
        self._clock.call_seconds += time.perf_counter() - started
        self._clock.calls += 1
        return result

    def failed_servers(self) -> dict[str, str]:
        return {}

    def new_step(self) -> None:
        pass


class _FunctionTools:
    """``StepTools`` whose only tool is a Python function returning its ``text`` argument."""

    def __init__(self, allowed: set[str], clock: ToolClock) -> None:
        self._allowed = allowed
        self._clock = clock

    async def call(
        self,
        qualified_name: str,
        arguments: dict[str, Any],
        *,
        timeout: float | None = None,
        on_progress: ProgressHandler | None = None,
    ) -> ToolResult:
        if qualified_name not in self._allowed:
            raise ToolNotAllowedError(f"{qualified_name} is not allowed")
        started = time.perf_counter()
        result = ToolResult(text=str(arguments.get("text", "")))
        self._clock.call_seconds += time.perf_counter() - started
        self._clock.calls += 1
        return result

    def failed_servers(self) -> dict[str, str]:
        return {}

    def new_step(self) -> None:
        pass


class InProcessPool:
    """A ``services.jobs.Pool``: one in-process MCP session per task (or a function tool).

    Task workspaces are the service's own (``tools.workspace.Workspaces``).
    """

    def __init__(self, kind: ToolKind, server: Any, workspaces: Workspaces) -> None:
        self.kind = kind
        self.clock = ToolClock()
        self.workspaces = workspaces
        self._server = server

    def open_task(
        self,
        task_id: str,
        server_ids: set[str],
        allowed_tools: set[str],
        workspace: Path,
        env: dict[str, str] | None = None,
    ) -> AbstractAsyncContextManager[StepTools]:
        return self._open(set(allowed_tools))

    @asynccontextmanager
    async def _open(self, allowed: set[str]) -> AsyncIterator[StepTools]:
        if self.kind == "function":
            yield _FunctionTools(allowed, self.clock)
            return
        opened = time.perf_counter()
        closing = 0.0
        try:
            # Entered and exited in the executing job's own task (MCP task affinity).
            async with Client(self._server, mode="legacy") as client:
                self.clock.session_seconds += time.perf_counter() - opened
                try:
                    yield _McpTools(client, allowed, self.clock)
                finally:
                    closing = time.perf_counter()
        finally:
            if closing:
                self.clock.session_seconds += time.perf_counter() - closing


@dataclass
class InProcessCatalog:
    """A ``services.jobs.Catalog`` over the tools the example server lists."""

    infos: list[ToolInfo]
    _by_name: dict[str, ToolInfo] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._by_name = {t.qualified_name: t for t in self.infos}

    def tools(self) -> list[ToolInfo]:
        return list(self.infos)

    def get(self, qualified: str) -> ToolInfo | None:
        return self._by_name.get(qualified)


async def in_process_tools(
    kind: ToolKind, settings: Settings, notes_dir: Path
) -> tuple[InProcessCatalog, InProcessPool]:
    """Build the example server object once, list its tools, and wrap both for ``TaskJobs``."""
    server = load_example_module().build_server(notes_dir)
    async with Client(server, mode="legacy") as client:
        listed = (await client.list_tools()).tools
    catalog = InProcessCatalog([tool_info("example", t, {}) for t in listed])
    return catalog, InProcessPool(kind, server, Workspaces(settings.tools))


# -- the runtime and the app -------------------------------------------------------------------------

ExecuteJob = Callable[[Lease], Awaitable[None]]


async def build_bench_runtime(
    settings: Settings,
    llm: LLMClient,
    catalog: InProcessCatalog,
    pool: InProcessPool,
    *,
    execute_seconds: dict[str, tuple[float, float]] | None = None,
) -> Runtime:
    """``build_runtime`` with ``llm``; then jobs, runner and task service rebuilt over our pool/catalog.

    ``execute_seconds`` (if given) receives (wall, event-loop thread CPU) seconds of each task's
    execute job; the CPU figure counts whatever else the loop ran meanwhile.
    """
    runtime = await build_runtime(settings, Overrides(planner_llm=llm, executor_llm=llm))
    jobs = TaskJobs(
        store=runtime.store,
        settings=settings,
        planner_llm=llm,
        executor_llm=llm,
        catalog=catalog,
        pool=pool,
        metrics=runtime.metrics,
        tracing=runtime.tracing,
    )
    execute: ExecuteJob = jobs.execute
    if execute_seconds is not None:

        async def timed_execute(lease: Lease) -> None:
            started, cpu = time.perf_counter(), time.thread_time()
            try:
                await jobs.execute(lease)
            finally:
                execute_seconds[lease.task_id] = (time.perf_counter() - started, time.thread_time() - cpu)

        execute = timed_execute
    runtime.runner = Runner(
        runtime.store, runtime.bus, settings.runner, plan_job=jobs.plan, execute_job=execute, metrics=runtime.metrics
    )
    runtime.tasks = TaskService(
        runtime.store,
        settings.limits,
        lambda: [t.qualified_name for t in catalog.tools()],
        hand_off=runtime.runner if settings.runner.hand_off else None,
    )
    return runtime


def bench_app(settings: Settings, llm: LLMClient, kind: ToolKind, notes_dir: Path) -> FastAPI:
    """The real app (routes, error handlers); its lifespan builds the bench runtime instead.

    The tools are built inside the lifespan, on the server's event loop; the pool is then on
    ``app.state.pool`` (its clock) and the runtime on ``app.state.runtime`` as usual.
    """
    app = create_app(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        catalog, pool = await in_process_tools(kind, settings, notes_dir)
        runtime = await build_bench_runtime(settings, llm, catalog, pool)
        app.state.runtime = runtime
        app.state.pool = pool
        async with anyio.create_task_group() as tg:
            await serve_background(runtime, tg)
            await runtime.catalog.wait_settled()  # as before: measure once the catalogue is known
            try:
                yield
            finally:
                await stop_runtime(runtime)
                tg.cancel_scope.cancel()

    app.router.lifespan_context = lifespan
    return app


async def until(sub: Subscription, event_type: str, timeout: float = 30, seen: dict[str, Event] | None = None) -> Event:
    """The next pushed event of ``event_type`` (subscribe before acting; no store reads while waiting).

    ``seen`` (if given) collects every event passed on the way, by type.
    """
    with anyio.fail_after(timeout):
        while True:
            await sub.wait(timeout)
            if sub.overflowed:
                raise RuntimeError(f"subscription of {sub.task_id} overflowed")
            for event in sub.drain():
                if seen is not None:
                    seen[event.type] = event
                if event.type == event_type:
                    return event
                if event.is_terminal:
                    raise RuntimeError(f"task {sub.task_id} ended with {event.type}: {event.data}")
