"""Task-scoped MCP servers: approve -> first tool call, 1 vs 3 servers, cold vs warm pool.

    uv run python -m bench.bench_tools              # full run (10 samples per case, about 2.5 minutes)
    uv run python -m bench.bench_tools --quick      # 5 samples per case

Prints the figures and writes ``bench/results/tools.json``. Every figure comes from this run.

Setup (everything on 127.0.0.1): one ``agent-runtime serve`` process on SQLite, the scripted test
model (``agent_runtime.testing.ScriptedModel``) behind its fake OpenAI wire server, answering at
once, and the example MCP server
(``examples/mcp_server/server.py``, stdio) registered three times, as ``example``, ``example2`` and
``example3``. A plan "needs N servers" when its step lists tools of N of them; the model then calls
``example.echo`` first.

Measured:

* the servers alone, in this process, through the service's own ``ToolPool.open_task`` (what the
  executor calls): one server (each id in turn) and all three at once, from nothing to every server
  initialised with its tools listed, plus the CPU a fresh server process used to get there;
* through the service: approve POST -> first ``tool_call_started``, server-side (the event
  timestamps ``task_approved.created_at`` -> ``tool_call_started.created_at``) and client-side (POST
  sent -> SSE event received), for 1- and 3-server plans, with ``prewarm: 0`` (cold) and
  ``prewarm: 1`` per server (warm; the next sample waits until ``GET /v1/tools`` shows the pool full
  again and no server process besides the warm ones alive).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # also runnable as ``python bench/bench_tools.py``
    sys.path.insert(0, str(REPO))

import anyio  # noqa: E402
import httpx  # noqa: E402
import psutil  # noqa: E402
from httpx_sse import aconnect_sse  # noqa: E402

from agent_runtime.settings import ToolSettings  # noqa: E402
from agent_runtime.testing import ScriptedModel, ToolCalls, serve_on_loopback  # noqa: E402
from agent_runtime.tools.pool import ToolPool  # noqa: E402
from agent_runtime.tools.registry import load_registry  # noqa: E402
from bench.stats import code_version, log, pct, summary  # noqa: E402
from tests.support.harness import EXAMPLE_SERVER  # noqa: E402
from tests.support.process import ServiceProcess, write_config  # noqa: E402

RESULTS = REPO / "bench" / "results" / "tools.json"
SERVERS = ("example", "example2", "example3")
TERMINAL = {"task_completed", "task_failed", "task_cancelled", "task_rejected"}
TARGETS = {
    "warm_approve_to_first_tool_call_p50_ms": ("<=", 50.0),
    "three_cold_over_slowest_single_cold": ("<=", 1.1),
}


def fmt(s: dict[str, float]) -> str:
    return f"p50 {s['p50']:.1f} ms, p95 {s['p95']:.1f}, min {s['min']:.1f}, max {s['max']:.1f} (n={s['n']})"


def ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def registry_text(prewarm: int) -> str:
    entries = []
    for sid in SERVERS:
        entries.append(
            f"  - id: {sid}\n"
            "    type: local_stdio\n"
            "    config:\n"
            "      command: ${PYTHON}\n"
            f"      args: ['{EXAMPLE_SERVER}']\n"
            f"    prewarm: {prewarm}\n"
        )
    return "servers:\n" + "".join(entries)


# -- the fake model ------------------------------------------------------------------------------------

NEEDS = re.compile(r"bench servers=(\d) #([\w-]+)")


def _needs(conversation: str) -> re.Match[str]:
    m = NEEDS.search(conversation)
    assert m is not None, "every prompt names how many servers it needs"
    return m


def plan_for(conversation: str) -> dict[str, Any]:
    """One step allowed the ``echo`` of as many servers as the prompt asks for."""
    servers = SERVERS[: int(_needs(conversation).group(1))]
    step = {"id": "s1", "title": "echo", "instruction": "echo", "tools": [f"{sid}.echo" for sid in servers]}
    return {"summary": f"{len(servers)} servers", "steps": [{**step, "depends_on": []}]}


def calls_for(conversation: str, step_id: str) -> ToolCalls:
    return [("example.echo", {"text": _needs(conversation).group(2)})]


def bench_model() -> ScriptedModel:
    """The scripted test model with this benchmark's rules; one-delta answers ("ok", then "done")."""
    return ScriptedModel(plan_for, calls_for, step_text="ok", summary_text="done", text_deltas=1)


# -- 1. the servers alone, through the service's pool -------------------------------------------------


async def bench_pool_direct(tmp: Path, samples: int) -> dict[str, Any]:
    """``ToolPool.open_task`` in this process: time until every server of the task is ready."""
    registry_path = tmp / "direct_registry.yaml"
    registry_path.write_text(registry_text(prewarm=0))
    settings = ToolSettings(registry_path=registry_path, workspace_root=tmp / "direct-ws", connect_timeout_seconds=60)
    pool = ToolPool(load_registry(registry_path), settings)
    await pool.start()
    single: dict[str, list[float]] = {sid: [] for sid in SERVERS}
    single_cpu: list[float] = []
    three: list[float] = []
    three_cpu: list[float] = []
    teardown: list[float] = []
    try:
        for i in range(samples):  # interleaved, so both cases see the same background load
            for case in ("single", "three"):
                sids = [SERVERS[i % 3]] if case == "single" else list(SERVERS)
                task_id = f"direct-{case}-{i}"
                workspace = pool.workspaces.create(task_id)
                started = time.perf_counter()
                async with pool.open_task(task_id, sids, {f"{sid}.echo" for sid in sids}, workspace) as tools:
                    ready = (time.perf_counter() - started) * 1000
                    assert not tools.failed_servers(), tools.failed_servers()
                    cpu = []
                    for proc in psutil.Process().children(recursive=True):
                        try:  # the task's server processes work in its workspace
                            if proc.cwd() == str(workspace):
                                t = proc.cpu_times()
                                cpu.append((t.user + t.system) * 1000)
                        except psutil.Error:
                            continue
                    await tools.call(f"{sids[0]}.echo", {"text": "x"})
                    closing = time.perf_counter()
                teardown.append((time.perf_counter() - closing) * 1000)
                await pool.workspaces.remove(task_id, force=True)
                if case == "single":
                    single[sids[0]].append(ready)
                    single_cpu += cpu
                else:
                    three.append(ready)
                    three_cpu.append(sum(cpu))
    finally:
        await pool.aclose()
    all_single = [v for vs in single.values() for v in vs]
    per_id = {sid: summary(vs) for sid, vs in single.items()}
    slowest = max(per_id.values(), key=lambda s: s["p50"])
    cold, three_ready, ratio = summary(all_single), summary(three), pct(three, 50) / slowest["p50"]
    single_cpu_ms, three_cpu_ms, teardown_ms = summary(single_cpu), summary(three_cpu), summary(teardown)
    out = {
        "single_cold_start_ms": cold,
        "single_cold_start_by_server_ms": per_id,
        "slowest_single_p50_ms": slowest["p50"],
        "three_concurrent_ready_ms": three_ready,
        "ratio_three_over_slowest_single": ratio,
        "server_process_cpu_ms_at_ready": single_cpu_ms,
        "three_servers_cpu_ms_at_ready": three_cpu_ms,
        "teardown_ms": teardown_ms,
        "cores": os.cpu_count(),
    }
    log(f"[pool] one server cold start (spawn -> initialized + tools listed): {fmt(cold)}")
    for sid, s in per_id.items():
        log(f"[pool]   {sid}: p50 {s['p50']:.1f} ms (n={s['n']})")
    log(f"[pool] three servers at once, all ready: {fmt(three_ready)}")
    log(f"[pool] 3 servers ready / slowest single (p50 {slowest['p50']:.1f} ms) = {ratio:.2f}x (target <= 1.1x)")
    log(
        f"[pool] CPU a fresh server process used until ready: {fmt(single_cpu_ms)}; "
        f"three servers together: p50 {three_cpu_ms['p50']:.0f} ms on {os.cpu_count()} cores"
    )
    log(f"[pool] teardown (open_task exit: servers stopped): {fmt(teardown_ms)}")
    return out


# -- 2. through the service ---------------------------------------------------------------------------


async def pool_status(client: httpx.AsyncClient) -> dict[str, Any]:
    status: dict[str, Any] = (await client.get("/v1/tools")).json()["pool"]
    return status


async def wait_settled(client: httpx.AsyncClient, prewarm: int, timeout: float = 60) -> dict[str, Any]:
    """Until the warm pool is full and no other server process is alive (the previous task's are gone)."""
    deadline = time.perf_counter() + timeout
    while True:
        status = await pool_status(client)
        warm = status["warm"]["servers"]
        full = all(
            warm.get(sid, {}).get("ready", 0) >= prewarm and warm.get(sid, {}).get("starting", 0) == 0
            for sid in SERVERS
        )
        if (prewarm == 0 or full) and status["live_processes"] == prewarm * len(SERVERS):
            return status
        if time.perf_counter() > deadline:
            raise TimeoutError(f"pool did not settle: {status}")
        await asyncio.sleep(0.05)


async def one_task(
    client: httpx.AsyncClient, stream_client: httpx.AsyncClient, servers: int, tag: str
) -> dict[str, float]:
    response = await client.post("/v1/tasks", json={"prompt": f"bench servers={servers} #{tag}"})
    assert response.status_code == 202, response.text
    task_id = response.json()["id"]
    seen: dict[str, dict[str, Any]] = {}
    with anyio.fail_after(120):
        async with aconnect_sse(stream_client, "GET", f"/v1/tasks/{task_id}/stream") as source:
            async for sse in source.aiter_sse():
                if sse.event in ("approval_required", *TERMINAL):
                    break
        assert sse.event == "approval_required", sse.data
        after = json.loads(sse.data)["seq"]
        async with aconnect_sse(
            stream_client, "GET", f"/v1/tasks/{task_id}/stream", headers={"Last-Event-ID": str(after)}
        ) as source:
            assert source.response.status_code == 200
            await asyncio.sleep(0.02)  # connected and idle, like a real client
            sent = time.perf_counter()
            poster = asyncio.create_task(client.post(f"/v1/tasks/{task_id}/approve", json={"plan_version": 1}))
            async for sse in source.aiter_sse():
                if not sse.data:
                    continue
                event = json.loads(sse.data)
                event["recv"] = time.perf_counter()
                seen.setdefault(sse.event, event)
                if sse.event in TERMINAL:
                    break
            assert (await poster).status_code == 202
    assert "task_completed" in seen, list(seen)
    approved = ts(seen["task_approved"]["created_at"])
    return {
        "client_approve_to_first_tool_call_ms": (seen["tool_call_started"]["recv"] - sent) * 1000,
        "server_approved_to_first_tool_call_ms": (ts(seen["tool_call_started"]["created_at"]) - approved) * 1000,
        "approved_to_execution_started_ms": (ts(seen["execution_started"]["created_at"]) - approved) * 1000,
        "execution_started_to_step_started_ms": (
            ts(seen["step_started"]["created_at"]) - ts(seen["execution_started"]["created_at"])
        )
        * 1000,
        "step_started_to_tool_call_started_ms": (
            ts(seen["tool_call_started"]["created_at"]) - ts(seen["step_started"]["created_at"])
        )
        * 1000,
        "step_completed_to_task_completed_ms": (
            ts(seen["task_completed"]["created_at"]) - ts(seen["step_completed"]["created_at"])
        )
        * 1000,
    }


async def bench_service(tmp: Path, root: str, samples: int) -> dict[str, Any]:
    registry = tmp / "tool_registry.yaml"
    registry.write_text(registry_text(prewarm=0))
    config = write_config(
        tmp,
        database_url=f"sqlite+aiosqlite:///{tmp / 'bench.sqlite'}",
        registry=registry,
        runner={"lease_seconds": 10, "heartbeat_seconds": 3, "safety_poll_seconds": 2},
        server={"sse_ping_seconds": 15},
        tools={"connect_timeout_seconds": 60},
    )
    service = ServiceProcess(config, llm_root=root, log_path=tmp / "service.log")
    started = time.perf_counter()
    service.start(timeout=120)
    log(f"[service] up in {time.perf_counter() - started:.1f} s")
    results: dict[str, Any] = {}
    client = httpx.AsyncClient(base_url=service.url, timeout=60)
    stream_client = httpx.AsyncClient(base_url=service.url, timeout=httpx.Timeout(60, read=120))
    try:
        for prewarm in (0, 1):
            mode = "cold" if prewarm == 0 else "warm"
            registry.write_text(registry_text(prewarm=prewarm))
            reload = await client.post("/v1/admin/reload-tools")
            assert reload.status_code == 200, reload.text
            await wait_settled(client, prewarm)
            for servers in (1, 3):
                before = (await pool_status(client))["warm"]["handed_out"]
                rows = []
                for i in range(samples + 1):  # the first is a warm-up, not counted
                    await wait_settled(client, prewarm)
                    row = await one_task(client, stream_client, servers, f"{mode}{servers}-{i}")
                    if i > 0:
                        rows.append(row)
                handed = (await pool_status(client))["warm"]["handed_out"] - before
                case: dict[str, Any] = {k: summary([r[k] for r in rows]) for k in rows[0]}
                case["warm_instances_handed_out"] = handed
                case["tasks"] = samples + 1
                results[f"{mode}_{servers}"] = case
                log(
                    f"[service] {mode}, {servers} server(s): approve -> first tool_call_started, server side "
                    f"{fmt(case['server_approved_to_first_tool_call_ms'])}"
                )
                client_side = fmt(case["client_approve_to_first_tool_call_ms"])
                log(f"[service]   client side (POST sent -> SSE event): {client_side}")
                log(
                    "[service]   p50 parts: claim "
                    f"{case['approved_to_execution_started_ms']['p50']:.1f} ms, servers "
                    f"{case['execution_started_to_step_started_ms']['p50']:.1f} ms, step start -> call "
                    f"{case['step_started_to_tool_call_started_ms']['p50']:.1f} ms; warm instances used "
                    f"{handed}/{samples + 1} tasks; step_completed -> task_completed "
                    f"{case['step_completed_to_task_completed_ms']['p50']:.1f} ms"
                )
    finally:
        await client.aclose()
        await stream_client.aclose()
        service.stop()
    return results


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    samples = 5 if args.quick else 10
    results: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "samples_per_case": samples,
        "machine": {
            "nproc": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "loadavg_at_start": os.getloadavg(),
            **code_version(),
        },
    }
    log(f"machine: {results['machine']}")
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-tools-") as tmp_name:
        tmp = Path(tmp_name)
        cpu0 = psutil.cpu_times()
        results["pool"] = await bench_pool_direct(tmp, samples)
        with serve_on_loopback(bench_model().fake()) as root:
            results["service"] = await bench_service(tmp, root, samples)
        cpu1 = psutil.cpu_times()
    wall = time.perf_counter() - began
    busy = (sum(cpu1) - cpu1.idle) - (sum(cpu0) - cpu0.idle)
    results["seconds"] = wall
    results["machine"]["loadavg_at_end"] = os.getloadavg()
    results["machine"]["mean_busy_cores_during_run"] = busy / wall
    measured = {
        "warm_approve_to_first_tool_call_p50_ms": results["service"]["warm_1"]["server_approved_to_first_tool_call_ms"][
            "p50"
        ],
        "three_cold_over_slowest_single_cold": results["pool"]["ratio_three_over_slowest_single"],
    }
    results["targets"] = {
        k: {"measured": v, "target": f"{TARGETS[k][0]} {TARGETS[k][1]}", "met": v <= TARGETS[k][1]}
        for k, v in measured.items()
    }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 samples per case instead of 10")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(json.dumps(results["targets"], indent=2))
    log(f"total {results['seconds']:.0f} s; wrote {args.output}")


if __name__ == "__main__":
    main()
