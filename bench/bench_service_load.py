"""Real MCP servers through the service (issue 16): tasks/s and approve -> first tool call, over HTTP.

    .venv/bin/python -m bench.bench_service_load --row fork --tasks 40            # a fresh process per task
    .venv/bin/python -m bench.bench_service_load --row shared --tasks 40          # scope: shared
    .venv/bin/python -m bench.bench_service_load --row warm --tasks 20            # prewarm 1, one task per s
    .venv/bin/python -m bench.bench_service_load --row shared --tasks 1000 --delay 0.3
    ... --repeat 2        # run the row again (each run: a fresh service and database)
    ... --profile DIR     # the service under cProfile, its whole life (start-up included; slower)
    ... --py-spy DIR --py-spy-bin PATH   # py-spy on the service during the measured part only

The rig (processes, sampler, py-spy) is ``service_rig.py``; reading the results, ``service_report.py``.
Everything on 127.0.0.1, three processes besides the MCP servers: this client, ``agent-runtime serve``
(SQLite, log level warning) and the fake LLM (``service_rig.py``: the scripted test model over the
OpenAI wire protocol, every reply held ``--delay`` s). The tool is the third-party
``mcp-server-time`` from its own virtualenv (``scripts/install-test-servers.sh``). Each task's plan
is one step allowed ``time.get_current_time``; the model calls it once, then answers; four model
calls per task (plan, tool call, step answer, summary).

Burst rows (``fork``, ``shared``): plans are approved by a policy file (``auto_approve``, as a
high-throughput deployment would), two warm-up tasks run first (the fork server and connections
start), then ``--tasks`` tasks are submitted at once (at most ``--submitters`` requests in flight)
and ``/metrics`` (``agent_runtime_tasks{state}``, read from the store) is polled until all are
finished. tasks/s = tasks / (first ``created_at`` -> last ``updated_at``, server clock); the client
wall time (first POST -> poll saw the last) is printed too. Also: peak RSS of the service and
(summed) of its children, the most tasks unfinished at once, CPU seconds per process.

Warm row: ``prewarm: 1``, no policy file: one task every ``--interval`` s is submitted, its stream
followed to ``approval_required``, then ``POST /approve``; approve -> first ``tool_call_started``,
server side (``task_approved.created_at`` -> ``tool_call_started.created_at``) and client side (POST
sent -> event received).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import anyio  # noqa: E402
import psutil  # noqa: E402
import yaml  # noqa: E402

from bench.http_client import HttpClient  # noqa: E402
from bench.service_report import describe, phases, top_costs, ts  # noqa: E402
from bench.service_rig import (  # noqa: E402
    TIME_SERVER,
    FakeLLMProcess,
    PySpy,
    Sampler,
    Service,
    registry_text,
    summarize_stacks,
    write_service_config,
)
from bench.stats import code_version, log, summary  # noqa: E402

TERMINAL = ("completed", "failed", "cancelled", "rejected")
STATE = re.compile(r'^agent_runtime_tasks\{state="(\w+)"\} ([0-9.e+]+)$', re.M)
PROMPT = "What time is it in UTC?"


async def task_counts(client: HttpClient) -> Counter[str]:
    text = (await client.request("GET", "/metrics")).text
    return Counter({state: int(float(n)) for state, n in STATE.findall(text)})


async def run_to_end(client: HttpClient, task_id: str, timeout: float = 120) -> str:
    """Follow a task's stream to its end; its terminal event type (with its data if it failed)."""
    last = ""
    with anyio.fail_after(timeout):
        async with client.events(f"/v1/tasks/{task_id}/stream") as stream:
            async for event in stream:
                last = event.event
                if last in {f"task_{s}" for s in TERMINAL}:
                    return last if last == "task_completed" else f"{last}: {event.data}"
    return last


async def all_tasks(client: HttpClient) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    cursor = None
    while True:
        path = "/v1/tasks?limit=200" + (f"&cursor={cursor}" if cursor else "")
        page = (await client.request("GET", path)).json()
        out.update({t["id"]: t for t in page["items"]})
        cursor = page.get("next_cursor")
        if not cursor:
            return out


async def wait_tools_ready(client: HttpClient, scope: str, prewarm: int, timeout: float = 120) -> dict[str, Any]:
    """Until the catalogue lists the tool, a shared server is ready and the warm pool is full."""
    with anyio.fail_after(timeout):
        while True:
            body = (await client.request("GET", "/v1/tools")).json()
            pool: dict[str, Any] = body["pool"]
            ready = any(t["name"] == "time.get_current_time" for t in body["tools"])
            if scope == "shared":
                ready = ready and pool["shared"].get("time", {}).get("ready", 0) >= 1
            if prewarm:
                ready = ready and pool["warm"]["servers"].get("time", {}).get("ready", 0) >= prewarm
            if ready:
                return pool
            await anyio.sleep(0.1)


def start_py_spy(args: argparse.Namespace, service: Service) -> PySpy | None:
    if not args.py_spy:
        return None
    out = Path(args.py_spy) / f"{args.row}-{args.tasks}-{args.delay:g}-{os.getpid()}-{time.time():.0f}.txt"
    return PySpy(args.py_spy_bin, service.proc.pid, out)


def stop_py_spy(spy: PySpy | None) -> None:
    if spy is None:
        return
    spy.stop()
    if spy.out.exists():
        summary_path = spy.out.with_suffix(".top.txt")
        summary_path.write_text(summarize_stacks(spy.out))
        log(f"  py-spy: {summary_path}")
    else:
        log(f"  py-spy wrote nothing: {spy.proc.stderr.read() if spy.proc.stderr else ''}")


# -- burst rows -------------------------------------------------------------------------------------


async def burst(service: Service, args: argparse.Namespace, fake_pid: int) -> dict[str, Any]:
    client = HttpClient(service.url, timeout=300)
    await wait_tools_ready(client, "shared" if args.row == "shared" else "task", 0)
    for _ in range(2):  # warm-up: the fork server, the LLM client's connections, the SQL caches
        task = (await client.request("POST", "/v1/tasks", json_body={"prompt": PROMPT}, expect=(202,))).json()
        outcome = await run_to_end(client, task["id"])
        assert outcome == "task_completed", outcome
    base = await task_counts(client)
    base_finished = sum(base[s] for s in TERMINAL)
    spy = start_py_spy(args, service)
    sampler = Sampler(service.proc.pid, others={"fake_llm": fake_pid, "client": os.getpid()})
    sampler.start()
    ids: list[str] = []
    submit_ms: list[float] = []
    submit_at: list[float] = []  # seconds after the first POST
    submit_wall: list[float] = []  # time.time() when sent: against the task's created_at
    errors: list[str] = []
    pending = iter(range(args.tasks))

    async def submitter() -> None:
        for _ in pending:
            sent, sent_wall = time.perf_counter(), time.time()
            try:
                response = await client.request("POST", "/v1/tasks", json_body={"prompt": PROMPT}, expect=(202,))
            except Exception as exc:  # a finding, not a crash of the benchmark
                errors.append(f"{type(exc).__name__}: {exc}"[:300])
                continue
            submit_ms.append((time.perf_counter() - sent) * 1000)
            submit_at.append(sent - began)
            submit_wall.append(sent_wall)
            ids.append(response.json()["id"])

    in_flight_peak, stalled, last_progress = 0, False, time.perf_counter()
    began = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(min(args.submitters, args.tasks)):
            tg.start_soon(submitter)
        finished = 0
        while True:
            await anyio.sleep(args.poll)
            counts = await task_counts(client)
            now_finished = sum(counts[s] for s in TERMINAL) - base_finished
            in_flight_peak = max(in_flight_peak, sum(n for s, n in counts.items() if s not in TERMINAL))
            if now_finished > finished:
                finished, last_progress = now_finished, time.perf_counter()
            if finished + len(errors) >= args.tasks:
                break
            if time.perf_counter() - last_progress > args.stall_seconds:
                stalled = True
                log(f"  STALL: no task finished for {args.stall_seconds:.0f} s; counts {dict(counts)}")
                break
    client_wall = time.perf_counter() - began
    usage = sampler.finish()
    stop_py_spy(spy)
    tasks = await all_tasks(client)
    mine = [tasks[i] for i in ids if i in tasks]
    statuses = Counter(t["status"] for t in mine)
    failures: list[Any] = []
    for t in mine:
        if t["status"] != "completed" and len(failures) < 5:
            failures.append((await client.request("GET", f"/v1/tasks/{t['id']}")).json())
    first = min(ts(t["created_at"]) for t in mine)
    last = max(ts(t["updated_at"]) for t in mine)
    durations = [(ts(t["updated_at"]) - ts(t["created_at"])) * 1000 for t in mine]
    server_wall = last - first
    task_phases = await phases(client, ids)
    await client.aclose()
    await anyio.sleep(3)  # every task's teardown has had time to finish
    root = service.config.parent / "workspaces"
    left = [p.name for p in root.iterdir() if not p.name.startswith(".")] if root.exists() else []
    children = len(psutil.Process(service.proc.pid).children(recursive=True))
    return {
        "tasks": args.tasks,
        "statuses": dict(statuses),
        "submit_errors": errors[:10],
        "submit_error_count": len(errors),
        "stalled": stalled,
        "failures": failures,
        "server_wall_s": server_wall,
        "client_wall_s": client_wall,
        "tasks_per_s": statuses["completed"] / server_wall,
        "client_tasks_per_s": statuses["completed"] / client_wall,
        "task_ms": summary(durations),
        "submit_ms": summary(submit_ms),
        "slowest_submits": sorted(
            (
                # created_ms: sent -> the task's created_at (the insert), i.e. the wait before it
                {
                    "sent_at_s": round(at, 2),
                    "ms": round(ms),
                    "created_ms": round((ts(tasks[i]["created_at"]) - w) * 1000),
                }
                for at, ms, w, i in zip(submit_at, submit_ms, submit_wall, ids, strict=True)
                if i in tasks
            ),
            key=lambda x: -x["ms"],
        )[:10],
        "connections_opened": client.connections_opened,
        "peak_unfinished_tasks": in_flight_peak,
        "phases_ms": task_phases,
        "finished_at": {t["id"]: t["updated_at"] for t in mine},
        "workspaces_left_after_3s": len(left),
        "service_children_after_3s": children,
        "usage": usage,
    }


# -- the warm row -----------------------------------------------------------------------------------


async def approve_one(client: HttpClient, n: int) -> dict[str, float]:
    task = (await client.request("POST", "/v1/tasks", json_body={"prompt": f"{PROMPT} #{n}"}, expect=(202,))).json()
    task_id = task["id"]
    after = None
    with anyio.fail_after(120):
        async with client.events(f"/v1/tasks/{task_id}/stream") as stream:
            async for event in stream:
                if event.event == "approval_required":
                    after = event.id
                    break
        assert after is not None
        seen: dict[str, Any] = {}
        async with client.events(f"/v1/tasks/{task_id}/stream", headers={"Last-Event-ID": after}) as stream:
            sent = time.perf_counter()
            approve = asyncio.ensure_future(
                client.request("POST", f"/v1/tasks/{task_id}/approve", json_body={"plan_version": 1}, expect=(202,))
            )
            async for event in stream:
                data = json.loads(event.data)
                data["recv"] = time.perf_counter()
                seen.setdefault(event.event, data)
                if event.event.removeprefix("task_") in TERMINAL:
                    break
            await approve
    assert "task_completed" in seen, list(seen)
    approved = ts(seen["task_approved"]["created_at"])
    return {
        "client_ms": (seen["tool_call_started"]["recv"] - sent) * 1000,
        "server_ms": (ts(seen["tool_call_started"]["created_at"]) - approved) * 1000,
        "claim_ms": (ts(seen["execution_started"]["created_at"]) - approved) * 1000,
        "servers_ms": (ts(seen["step_started"]["created_at"]) - ts(seen["execution_started"]["created_at"])) * 1000,
    }


async def warm(service: Service, args: argparse.Namespace, fake_pid: int) -> dict[str, Any]:
    client = HttpClient(service.url, timeout=300)
    await wait_tools_ready(client, "task", 1)
    await approve_one(client, -1)  # warm-up, not counted
    await wait_tools_ready(client, "task", 1)
    before = (await client.request("GET", "/v1/tools")).json()["pool"]["warm"]
    sampler = Sampler(service.proc.pid, others={"fake_llm": fake_pid, "client": os.getpid()})
    sampler.start()
    rows: list[dict[str, float]] = []

    async def one(n: int) -> None:
        rows.append(await approve_one(client, n))

    async with anyio.create_task_group() as tg:
        for n in range(args.tasks):
            tg.start_soon(one, n)
            await anyio.sleep(args.interval)
    usage = sampler.finish()
    after = (await client.request("GET", "/v1/tools")).json()["pool"]["warm"]
    await client.aclose()
    out: dict[str, Any] = {key: summary([r[key] for r in rows]) for key in rows[0]}
    out.update(
        tasks=args.tasks,
        handed_out=after["handed_out"] - before["handed_out"],
        missed=after.get("missed", 0) - before.get("missed", 0),
        usage=usage,
    )
    return out


# -- driver -----------------------------------------------------------------------------------------


def overrides(pairs: list[str]) -> dict[str, dict[str, Any]]:
    """``--set runner.lease_seconds=30`` -> ``{"runner": {"lease_seconds": 30}}`` (values as YAML)."""
    out: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        section, _, name = key.partition(".")
        out.setdefault(section, {})[name] = yaml.safe_load(value)
    return out


async def run_once(args: argparse.Namespace, run: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-svc-") as tmp_name:
        tmp = Path(tmp_name)
        scope = "shared" if args.row == "shared" else "task"
        registry = registry_text(scope=scope, prewarm=1 if args.row == "warm" else 0, instances=args.instances)
        config = write_service_config(
            tmp, registry, auto_approve=args.row != "warm", provider=args.provider, **overrides(args.set)
        )
        fake = FakeLLMProcess(args.delay)
        profile = Path(args.profile) / f"{args.row}-{args.tasks}-{run}.prof" if args.profile else None
        service = Service(config, fake.root, tmp / "service.log", profile=profile)
        try:
            service.wait_ready()
            body = burst if args.row != "warm" else warm
            result = await body(service, args, fake.proc.pid)
        finally:
            service.stop()
            fake.stop()
            lines = (tmp / "service.log").read_text().splitlines()
            if args.keep_log:
                await anyio.Path(args.keep_log).write_text("\n".join(lines) + "\n")
            logged = [json.loads(line) for line in lines if line.startswith("{")]
        errors = [e for e in logged if e.get("level") in ("error", "critical")]
        result["service_log_errors"] = errors[:5]
        result["service_log_error_count"] = len(errors)
        result["service_log_warnings"] = dict(Counter(e.get("event") for e in logged if e.get("level") == "warning"))
        lost = {e.get("task_id") for e in logged if e.get("event") == "lease_lost_on_renew"}
        if "phases_ms" in result:  # did the tasks whose lease was lost on renewal run a phase twice?
            sampled = set(result["phases_ms"].pop("sampled_ids"))
            rerun = set(result["phases_ms"].pop("rerun_ids"))
            result["lease_lost_sampled"] = len(lost & sampled)
            result["lease_lost_sampled_and_rerun"] = len(lost & rerun)
        if "finished_at" in result:  # when was each lease lost, after the task's last update (its end)?
            finished = result.pop("finished_at")
            after = [
                (ts(e["timestamp"]) - ts(finished[e["task_id"]])) * 1000
                for e in logged
                if e.get("event") == "lease_lost_on_renew" and e.get("task_id") in finished
            ]
            result["lease_lost_ms_after_task_finished"] = summary(after)
        if profile is not None and profile.exists():
            (profile.with_suffix(".txt")).write_text(top_costs(profile))
            log(f"  profile: {profile.with_suffix('.txt')}")
    return result


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {
        "args": vars(args),
        "machine": {"nproc": os.cpu_count(), "loadavg_at_start": os.getloadavg(), **code_version()},
        "runs": [],
    }
    for run in range(args.repeat):
        log(f"[{args.row}] run {run + 1}/{args.repeat}: {args.tasks} tasks, LLM delay {args.delay} s, load "
            f"{os.getloadavg()[0]:.2f}")  # fmt: skip
        r = await run_once(args, run)
        results["runs"].append(r)
        print(f"[{args.row}] run {run + 1}: {describe(args.row, r)}", flush=True)
    results["machine"]["loadavg_at_end"] = os.getloadavg()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--row", choices=["fork", "shared", "warm"], required=True)
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--provider", choices=["openai", "anthropic"], default="openai", help="the LLM wire")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds the fake LLM holds every reply")
    parser.add_argument("--instances", type=int, default=1, help="shared row: instances of the shared server")
    parser.add_argument("--submitters", type=int, default=64, help="burst rows: submit requests in flight at most")
    parser.add_argument("--interval", type=float, default=1.0, help="warm row: seconds between tasks")
    parser.add_argument("--poll", type=float, default=0.1, help="burst rows: /metrics poll interval")
    parser.add_argument("--stall-seconds", type=float, default=60)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--profile", help="a folder: run the service under cProfile, write stats there")
    parser.add_argument("--py-spy", help="a folder: sample the service with py-spy during the measured part")
    parser.add_argument("--py-spy-bin", default="py-spy", help="the py-spy executable (not a dependency)")
    parser.add_argument("--set", action="append", default=[], help="a service setting: SECTION.KEY=VALUE")
    parser.add_argument("--keep-log", help="copy the service's log here (the last run's)")
    parser.add_argument("--output", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    if not TIME_SERVER.exists():
        raise SystemExit(f"{TIME_SERVER} missing: run scripts/install-test-servers.sh")
    for folder in (args.profile, args.py_spy):
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
    results = anyio.run(main_async, args)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
