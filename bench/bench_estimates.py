"""How good are plan estimates? Estimate at approval time against what each task then spent.

    .venv/bin/python -m bench.bench_estimates [--tasks 40] [--llm-ms 0]

The real service in process (``build_runtime``: SQLite, runner, the example MCP server as a process,
the real OpenAI SDK against the scripted wire fake, whose usage counts four characters a token of
what is sent and returned). A read-only policy approves plans on its own. The workload cycles
through four plan shapes (1-4 steps over echo/add/multiply/list_notes, one to three calls a step),
one task at a time, so each plan's estimate can learn from the tasks before it
(``policy.estimate_history_seconds: 0``). Reported per basis (``heuristic``: no similar step done
yet; ``history``; ``mixed``): the median and p90 absolute percentage error of input tokens, output
tokens, tool calls and wall seconds, actual (``result.usage``) against estimate (``result.estimate``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import anyio  # noqa: E402

from agent_runtime.domain.states import is_terminal  # noqa: E402
from agent_runtime.runtime import build_runtime, serve_background, stop_runtime  # noqa: E402
from agent_runtime.settings import load_settings  # noqa: E402
from agent_runtime.testing import ScriptedModel, openai_overrides  # noqa: E402
from agent_runtime.testing.fake_server import FakeLLM, RecordedRequest, Reply  # noqa: E402
from bench.stats import log, pct  # noqa: E402

EXAMPLE_SERVER = REPO / "examples" / "mcp_server" / "server.py"
STEP_TOOLS: dict[str, tuple[str, dict[str, Any]]] = {
    "echo": ("example.echo", {"text": "hello"}),
    "add": ("example.add", {"a": 2, "b": 3}),
    "multiply": ("example.multiply", {"a": 4, "b": 5}),
    "list": ("example.list_notes", {}),
}
SHAPES: list[list[tuple[str, int]]] = [
    [("echo", 1)],
    [("add", 2), ("echo", 1)],
    [("multiply", 1), ("add", 1), ("list", 1)],
    [("echo", 3), ("add", 1), ("multiply", 2), ("list", 1)],
]
KEYS = ("input_tokens", "output_tokens", "cost_usd", "tool_calls", "wall_seconds")


def _plan(shape: list[tuple[str, int]]) -> dict[str, Any]:
    steps = [
        {"id": f"s{i}", "title": kind, "instruction": f"use {kind} {n} times", "tools": [STEP_TOOLS[kind][0]],
         "depends_on": [f"s{i - 1}"] if i > 1 else []}
        for i, (kind, n) in enumerate(shape, start=1)
    ]  # fmt: skip
    return {"summary": "bench", "steps": steps}


def _model(shape: list[tuple[str, int]]) -> ScriptedModel:
    calls = {f"s{i}": [STEP_TOOLS[kind]] * n for i, (kind, n) in enumerate(shape, start=1)}
    return ScriptedModel(_plan(shape), calls)


class Workload:
    """One scripted model per plan shape; the request names the shape."""

    def __init__(self, delay: float) -> None:
        self.models = [_model(shape) for shape in SHAPES]
        self.delay = delay

    def __call__(self, request: RecordedRequest) -> Reply:
        text = json.dumps(request.body.get("messages"))
        index = next((i for i in range(len(SHAPES)) if f"shape {i}." in text), 0)
        return replace(self.models[index](request), delay_seconds=self.delay)


def _error(actual: float, estimate: float) -> float:
    return abs(actual - estimate) / max(abs(actual), 1e-9) * 100


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-estimates-") as tmp_dir:
        tmp = Path(tmp_dir)
        registry = tmp / "tool_registry.yaml"
        registry.write_text(
            "servers:\n  - id: example\n    type: local_stdio\n    config:\n"
            f"      command: {sys.executable}\n      args: ['{EXAMPLE_SERVER}']\n"
        )
        policy = tmp / "policy.yaml"
        policy.write_text("plan_rules:\n  - {id: ro, match: {all_tools: {read_only: true}}, decision: auto_approve}\n")
        config = tmp / "config.yaml"
        config.write_text("{}\n")
        settings = load_settings(
            config,
            database={"url": f"sqlite+aiosqlite:///{tmp / 'db.sqlite'}"},
            tools={"registry_path": str(registry), "workspace_root": str(tmp / "ws")},
            llm={"planner": {"provider": "offline"}, "executor": {"provider": "offline"}},
            server={"log_level": "warning"},
            auth={"mode": "disabled"},
            policy={"path": str(policy), "estimate_history_seconds": 0},
        )
        fake = FakeLLM(responder=Workload(args.llm_ms / 1000))
        runtime = await build_runtime(settings, openai_overrides(fake))
        rows: list[dict[str, Any]] = []
        try:
            async with anyio.create_task_group() as tg:
                await serve_background(runtime, tg)
                await runtime.catalog.wait_settled()  # as before: measure once the catalogue is known
                for n in range(args.tasks):
                    task = await runtime.tasks.submit(f"bench shape {n % len(SHAPES)}.", None)
                    sub = runtime.bus.subscribe(task.id)
                    try:
                        with anyio.fail_after(120):
                            while not is_terminal((await runtime.store.get_task(task.id)).status):
                                await sub.wait(1.0)
                                sub.drain()
                    finally:
                        runtime.bus.unsubscribe(sub)
                    done = await runtime.store.get_task(task.id)
                    assert done.result is not None and done.status.value == "completed", done
                    estimate, usage = done.result["estimate"], done.result["usage"]
                    rows.append({"basis": estimate["basis"], **{k: _error(usage[k], estimate[k]) for k in KEYS}})
                    log(f"task {n}: {estimate['basis']} " + " ".join(f"{k}={rows[-1][k]:.0f}%" for k in KEYS))
                tg.cancel_scope.cancel()
        finally:
            await stop_runtime(runtime)
    report: dict[str, Any] = {"tasks": args.tasks, "llm_ms": args.llm_ms}
    for basis in sorted({r["basis"] for r in rows}):
        errors = [r for r in rows if r["basis"] == basis]
        report[basis] = {
            "n": len(errors),
            **{k: {"p50": round(pct([r[k] for r in errors], 50), 1), "p90": round(pct([r[k] for r in errors], 90), 1)}
               for k in KEYS},
        }  # fmt: skip
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--llm-ms", type=float, default=0.0, help="the fake model's answer time")
    report = anyio.run(run, parser.parse_args())
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
