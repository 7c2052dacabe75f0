"""Parallel steps (issue 17): a 6-step plan of three independent pairs, one step at a time vs four.

    .venv/bin/python -m bench.bench_parallel_steps [--runs 3] [--wait 0.5] [--output PATH]

The real runtime of ``bench_core`` (SQLite store, runner, ``TaskJobs``, the executor and its
journal) with the scripted model in process (0 ms, no streaming) and the example MCP server in
process. The plan: ``a1 → a2``, ``b1 → b2``, ``c1 → c2`` (three chains of two, independent of each
other); every step calls ``example.wait`` for ``--wait`` seconds once. For ``limits.max_parallel_steps``
1 and 4: one warm-up task, then ``--runs`` tasks, each timed from its approval to ``task_completed``
(wall clock). Ideal: 6 × wait one at a time, 2 × wait with 4 at once.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import anyio  # noqa: E402

from agent_runtime.domain.events import EventType  # noqa: E402
from agent_runtime.domain.plan import Plan, PlanStep  # noqa: E402
from agent_runtime.runtime import serve_background, stop_runtime  # noqa: E402
from agent_runtime.testing import ScriptedLLM, ScriptedModel, ToolCalls  # noqa: E402
from bench.core_rig import bench_settings, build_bench_runtime, in_process_tools, until  # noqa: E402
from bench.stats import code_version, log  # noqa: E402

PAIRS = ("a", "b", "c")


def pairs_llm(wait: float) -> ScriptedLLM:
    steps = []
    for p in PAIRS:
        steps.append(
            PlanStep(id=f"{p}1", title=f"{p} first", instruction="wait", tools=["example.wait"], depends_on=[])
        )
        steps.append(
            PlanStep(id=f"{p}2", title=f"{p} second", instruction="wait", tools=["example.wait"], depends_on=[f"{p}1"])
        )
    plan = Plan(summary="three independent pairs", steps=steps).model_dump()
    calls: dict[str, ToolCalls] = {s.id: [("example.wait", {"seconds": wait, "steps": 1})] for s in steps}
    return ScriptedModel(plan, calls, step_text="done", summary_text="done", text_deltas=0).client()


async def run(tmp: Path, parallel: int, runs: int, wait: float) -> dict[str, Any]:
    settings = bench_settings(tmp, limits={"max_parallel_steps": parallel})
    llm = pairs_llm(wait)
    catalog, pool = await in_process_tools("mcp", settings, tmp / "notes")
    runtime = await build_bench_runtime(settings, llm, catalog, pool)
    walls: list[float] = []
    async with anyio.create_task_group() as tg:
        await serve_background(runtime, tg)
        await runtime.catalog.wait_settled()  # as before: measure once the catalogue is known
        try:
            for n in range(runs + 1):
                task = await runtime.tasks.submit("three independent pairs", None)
                sub = runtime.bus.subscribe(task.id, after=task.last_seq)
                try:
                    required = await until(sub, EventType.APPROVAL_REQUIRED)
                    started = time.perf_counter()
                    await runtime.tasks.approve(task.id, int(required.data["plan_version"]), "bench")
                    await until(sub, EventType.TASK_COMPLETED, timeout=120)
                    wall = time.perf_counter() - started
                finally:
                    runtime.bus.unsubscribe(sub)
                if n == 0:
                    continue  # warm-up
                walls.append(wall)
                log(f"max_parallel_steps={parallel} run {n}: {wall:.3f} s approve→completed")
        finally:
            await stop_runtime(runtime)
            tg.cancel_scope.cancel()
    return {
        "max_parallel_steps": parallel,
        "runs": runs,
        "approve_to_completed_s": walls,
        "approve_to_completed_median_s": statistics.median(walls),
        "ideal_s": wait * (6 if parallel == 1 else 2),
    }


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--wait", type=float, default=0.5, help="seconds each step's tool call waits")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "parallel_steps.json")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"code": code_version(), "wait_s": args.wait, "modes": []}
    for parallel in (1, 4):
        with tempfile.TemporaryDirectory(prefix="bench-parallel-") as tmp:
            results["modes"].append(await run(Path(tmp), parallel, args.runs, args.wait))
    for mode in results["modes"]:
        print(
            f"max_parallel_steps={mode['max_parallel_steps']}: approve→completed median "
            f"{mode['approve_to_completed_median_s']:.3f} s (ideal {mode['ideal_s']:.1f} s)"
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    anyio.run(main)
