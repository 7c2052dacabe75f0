"""The service under benchmark, in its own process (started by ``bench_core.py``; not run by hand).

``serve``  serves the bench app (real routes, real runtime, ``zero_llm()``, in-process tool) with uvicorn
           on 127.0.0.1, the way ``agent-runtime serve`` does (uvicorn defaults: uvloop + httptools,
           ``log_config=None``, the service's own logging at ``warning``, ``cli.tune_gc``). Prints one JSON line
           ``{"port": ...}`` once it accepts connections; stops on SIGINT/SIGTERM (graceful drain).
``memory`` creates tasks through ``TaskService.submit`` (what ``POST /v1/tasks`` calls), lets the
           runner plan them all to ``awaiting_approval``, and prints the RSS growth as one JSON line.
           It stops early at a time budget and says how many tasks it reached.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import psutil
import uvicorn

from agent_runtime.cli import tune_gc
from agent_runtime.domain.events import EventType
from agent_runtime.logging import configure_logging
from agent_runtime.runtime import Runtime, serve_background, stop_runtime

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # runnable as ``python bench/<script>.py``
    sys.path.insert(0, str(REPO_ROOT))

from bench.core_rig import bench_app, bench_settings, build_bench_runtime, in_process_tools, until, zero_llm  # noqa: E402

PROMPT = "Echo a greeting for the benchmark."


class _Server(uvicorn.Server):
    """uvicorn's server that reports its port on stdout once it listens."""

    def __init__(self, config: uvicorn.Config, port: int) -> None:
        super().__init__(config)
        self.port = port

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        print(json.dumps({"port": self.port}), flush=True)


def serve(args: argparse.Namespace) -> None:
    tmp = Path(args.dir)
    settings = bench_settings(tmp)
    configure_logging(settings.server)
    app = bench_app(settings, zero_llm(args.steps), args.tool, tmp / "notes")
    tune_gc()  # as `agent-runtime serve` does
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(app, log_config=None, lifespan="on", timeout_graceful_shutdown=5)
    server = _Server(config, port)
    profiler = cProfile.Profile() if args.profile else None
    if profiler is not None:
        profiler.enable()
    try:
        server.run(sockets=[sock])
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)
        sock.close()


async def _memory(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(args.dir)
    settings = bench_settings(tmp)
    configure_logging(settings.server)
    catalog, pool = await in_process_tools("mcp", settings, tmp / "notes")
    runtime = await build_bench_runtime(settings, zero_llm(1), catalog, pool)
    proc = psutil.Process()
    curve: list[tuple[int, int]] = []
    async with anyio.create_task_group() as tg:
        await serve_background(runtime, tg)
        await runtime.catalog.wait_settled()  # as before: measure once the catalogue is known
        try:
            await _create_planned(runtime, args.warmup, args.concurrency)
            gc.collect()
            rss_before, objects_before = proc.memory_info().rss, len(gc.get_objects())
            started = time.perf_counter()
            created = 0
            while created < args.tasks and time.perf_counter() - started < args.seconds:
                chunk = min(args.chunk, args.tasks - created)
                await _create_planned(runtime, chunk, args.concurrency)
                created += chunk
                curve.append((created, proc.memory_info().rss - rss_before))
            seconds = time.perf_counter() - started
            gc.collect()
            rss_after, objects_after = proc.memory_info().rss, len(gc.get_objects())
            counts = await runtime.store.count_by_status()
            subscribers, active = runtime.bus.subscriber_count(), runtime.runner.active()
        finally:
            await stop_runtime(runtime)
            tg.cancel_scope.cancel()
    leftover = [repr(t) for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    result = {
        "leftover_tasks_after_stop_runtime": leftover,
        "tasks_requested": args.tasks,
        "tasks": created,
        "time_budget_seconds": args.seconds,
        "warmup_tasks": args.warmup,
        "rss_before_bytes": rss_before,
        "rss_after_bytes": rss_after,
        "rss_growth_bytes": rss_after - rss_before,
        "rss_growth_curve": curve,
        "python_objects_growth": objects_after - objects_before,
        "status_counts": counts,
        "bus_subscribers_after": subscribers,
        "runner_active_after": active,
        "create_and_plan_seconds": seconds,
        "db_bytes": _db_bytes(tmp),
    }
    # Printed before the event loop shuts down: a task left behind can keep asyncio.run from returning.
    print(json.dumps(result), flush=True)
    return result


def _db_bytes(tmp: Path) -> int:
    return sum(p.stat().st_size for p in tmp.glob("db.sqlite*"))


async def _create_planned(runtime: Runtime, count: int, concurrency: int) -> None:
    """Submit ``count`` tasks from ``concurrency`` submitters, each waiting until its task is planned."""
    remaining = iter(range(count))

    async def submitter() -> None:
        for _ in remaining:
            task = await runtime.tasks.submit(PROMPT, None)
            sub = runtime.bus.subscribe(task.id, after=task.last_seq)
            try:
                await until(sub, EventType.APPROVAL_REQUIRED)
            finally:
                runtime.bus.unsubscribe(sub)

    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(submitter)


def memory(args: argparse.Namespace) -> None:
    anyio.run(_memory, args, backend_options={"use_uvloop": True})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    p_serve = sub.add_parser("serve")
    p_serve.add_argument("--dir", required=True)
    p_serve.add_argument("--steps", type=int, default=1)
    p_serve.add_argument("--tool", choices=["mcp", "function"], default="mcp")
    p_serve.add_argument("--profile", help="write cProfile stats of the whole server run here")
    p_mem = sub.add_parser("memory")
    p_mem.add_argument("--dir", required=True)
    p_mem.add_argument("--tasks", type=int, default=10_000)
    p_mem.add_argument("--seconds", type=float, default=110, help="stop creating after this long")
    p_mem.add_argument("--chunk", type=int, default=500, help="record RSS after every CHUNK tasks")
    p_mem.add_argument("--warmup", type=int, default=200)
    p_mem.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args(argv)
    {"serve": serve, "memory": memory}[args.mode](args)


if __name__ == "__main__":
    main()
