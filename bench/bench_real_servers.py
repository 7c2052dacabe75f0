"""Real third-party MCP server under load, through the service's own ``ToolPool`` (no HTTP, no LLM).

    .venv/bin/python -m bench.bench_real_servers [--tasks 40]

``mcp-server-time`` from its own virtualenv (``scripts/install-test-servers.sh``). For each mode, N
tasks at once each open the server (a task-scoped instance, or the shared one), call
``get_current_time`` once and close: tasks/s = N / wall time; plus the per-task open latency.

Modes: ``spawn`` (``fork_server: false``: a fresh interpreter per task), ``fork`` (the default: a
fresh child of the fork server per task) and ``shared`` (``scope: shared``, one instance). This is
the pool-level part of issue 16's table; the through-the-service figures with the fake LLM are
``bench/bench_service_load.py``'s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import anyio  # noqa: E402

from agent_runtime.settings import ToolSettings  # noqa: E402
from agent_runtime.tools.pool import ToolPool  # noqa: E402
from agent_runtime.tools.registry import Registry  # noqa: E402
from bench.stats import log, summary  # noqa: E402

TIME = REPO / ".tools" / "mcp-time-venv" / "bin" / "mcp-server-time"


def registry(mode: str) -> Registry:
    entry: dict[str, Any] = {
        "id": "time",
        "type": "local_stdio",
        "config": {"command": str(TIME), "args": ["--local-timezone", "UTC"]},
        "fork_server": mode != "spawn",
    }
    if mode == "shared":
        entry["scope"] = "shared"
    return Registry.from_data({"servers": [entry]}, base_dir=REPO)


async def run_mode(mode: str, tasks: int, root: Path) -> dict[str, Any]:
    settings = ToolSettings(workspace_root=root / mode, connect_timeout_seconds=120, call_timeout_seconds=60)
    pool = ToolPool(registry(mode), settings)
    await pool.start(wait_for_warm=True)
    opened: list[float] = []
    try:
        if mode == "fork":  # start the fork server (one import) before the clock starts, as serve would
            warm_ws = pool.workspaces.create("warmup")
            async with pool.open_task("warmup", ["time"], {"time.get_current_time"}, warm_ws) as tools:
                await tools.call("time.get_current_time", {"timezone": "UTC"})

        async def one(n: int) -> None:
            task_id = f"{mode}-{n}"
            workspace = pool.workspaces.create(task_id)
            started = time.perf_counter()
            async with pool.open_task(task_id, ["time"], {"time.get_current_time"}, workspace) as tools:
                opened.append((time.perf_counter() - started) * 1000)
                result = await tools.call("time.get_current_time", {"timezone": "UTC"})
                assert not result.is_error, result.text
            await pool.workspaces.remove(task_id)

        began = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for n in range(tasks):
                tg.start_soon(one, n)
        wall = time.perf_counter() - began
    finally:
        await pool.aclose()
    s = summary(opened)
    out = {"mode": mode, "tasks": tasks, "wall_s": wall, "tasks_per_s": tasks / wall, "open_ms": s}
    log(
        f"[{mode}] {tasks} tasks at once: {tasks / wall:.2f} tasks/s; open p50 {s['p50']:.0f} ms, p95 {s['p95']:.0f} ms"
    )
    return out


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--modes", default="spawn,fork,shared")
    args = parser.parse_args()
    if not TIME.exists():
        raise SystemExit(f"{TIME} missing: run scripts/install-test-servers.sh")
    with tempfile.TemporaryDirectory(prefix="bench-real-") as tmp:
        for mode in args.modes.split(","):
            await run_mode(mode, args.tasks, Path(tmp))


if __name__ == "__main__":
    anyio.run(main)
