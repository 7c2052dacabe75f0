"""Warm pool under a steady stream (issue 16, item 3), through the service's own ``ToolPool``.

    .venv/bin/python -m bench.bench_warm_refill [--tasks 12] [--interval 1.0] [--work 0.3]

``mcp-server-time`` from its own virtualenv with ``prewarm: 1`` (fork server on). One task every
``--interval`` seconds opens the server, calls ``get_current_time`` and holds it ``--work``
seconds (standing in for the task's LLM turns) before closing. Reported: open → first call
answered (ms) and how many claims found no ready instance (``pool.warm.missed``, or, where the pool
has no such counter, ``tasks - handed_out``). No HTTP, no LLM.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import anyio  # noqa: E402

from agent_runtime.settings import ToolSettings  # noqa: E402
from agent_runtime.tools.pool import ToolPool  # noqa: E402
from agent_runtime.tools.registry import Registry  # noqa: E402
from bench.stats import log, summary  # noqa: E402

TIME = REPO / ".tools" / "mcp-time-venv" / "bin" / "mcp-server-time"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=12)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--work", type=float, default=0.3)
    args = parser.parse_args()
    entry = {
        "id": "time",
        "type": "local_stdio",
        "config": {"command": str(TIME), "args": ["--local-timezone", "UTC"]},
        "prewarm": 1,
    }
    first_call: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-warm-") as tmp:
        settings = ToolSettings(workspace_root=Path(tmp) / "ws", connect_timeout_seconds=120)
        pool = ToolPool(Registry.from_data({"servers": [entry]}, base_dir=REPO), settings)
        await pool.start(wait_for_warm=True)
        try:

            async def one(n: int) -> None:
                task_id = f"task-{n}"
                workspace = pool.workspaces.create(task_id)
                started = time.perf_counter()
                async with pool.open_task(task_id, ["time"], {"time.get_current_time"}, workspace) as tools:
                    result = await tools.call("time.get_current_time", {"timezone": "UTC"})
                    first_call.append((time.perf_counter() - started) * 1000)
                    assert not result.is_error, result.text
                    await anyio.sleep(args.work)
                await pool.workspaces.remove(task_id)

            async with anyio.create_task_group() as tg:
                for n in range(args.tasks):
                    tg.start_soon(one, n)
                    await anyio.sleep(args.interval)
            warm = pool.status()["warm"]
        finally:
            await pool.aclose()
    missed = warm.get("missed", args.tasks - warm["handed_out"])
    s = summary(first_call)
    print(
        f"{args.tasks} tasks, one per {args.interval:g} s: open -> first call p50 {s['p50']:.0f} ms, "
        f"p95 {s['p95']:.0f} ms, max {s['max']:.0f} ms; handed out {warm['handed_out']}, missed {missed}"
    )
    log(f"all: {[round(v) for v in first_call]}")


if __name__ == "__main__":
    anyio.run(main)
