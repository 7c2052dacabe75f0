"""Scale-out on PostgreSQL: cross-replica latency, 3 vs 1 replica throughput, per-step overhead,
and 1,000 SSE clients on one replica.

    uv run python -m bench.bench_replicas                 # full run (about 2.5-3 minutes on 2 cores)
    uv run python -m bench.bench_replicas --quick         # fewer samples, shorter windows
    uv run python -m bench.bench_replicas --only latency,steps

Needs PostgreSQL at ``$AGENT_RUNTIME_TEST_POSTGRES_URL`` (default
``postgresql+asyncpg://postgres@127.0.0.1:5432/test``); every run creates fresh databases and drops
them. Prints the figures and writes ``bench/results/replicas.json``. Nothing is hard-coded: every
figure comes from this run.

What runs where (everything on 127.0.0.1):

* replicas are real ``agent-runtime serve`` processes (``tests.support.process.ServiceProcess``),
  migrated with ``agent-runtime migrate`` first, sharing one fresh database;
* the LLM is the scripted test model (``agent_runtime.testing.ScriptedModel``, rules in
  :func:`bench_model`) behind its fake OpenAI wire server in this process, answering at once; the
  replicas reach it through the real OpenAI SDK (``OPENAI_BASE_URL``);
* the tool is the example MCP server (stdio), started per task by the pool (``prewarm: 0``);
* clients are httpx (+ httpx-sse) in this process;
* the per-step overhead is measured twice: in a replica process (LLM time seen by the fake server)
  and in this process on the real runtime (``build_runtime`` + ``serve_background``) with the same
  scripted model in process (zero I/O, its calls timed exactly), the figure compared with the target.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # also runnable as ``python bench/bench_replicas.py``
    sys.path.insert(0, str(REPO))
PG_ENV = "AGENT_RUNTIME_TEST_POSTGRES_URL"
os.environ.setdefault(PG_ENV, "postgresql+asyncpg://postgres@127.0.0.1:5432/test")

import anyio  # noqa: E402
import asyncpg  # noqa: E402
import httpx  # noqa: E402
import psutil  # noqa: E402
from httpx_sse import aconnect_sse  # noqa: E402
from sqlalchemy import event as sa_event  # noqa: E402

from agent_runtime.logging import configure_logging  # noqa: E402
from agent_runtime.runtime import Overrides, build_runtime, serve_background, stop_runtime  # noqa: E402
from agent_runtime.services.pg_listener import asyncpg_dsn  # noqa: E402
from agent_runtime.settings import load_settings  # noqa: E402
from agent_runtime.testing import ScriptedModel, ToolCalls, serve_on_loopback  # noqa: E402
from bench.stats import code_version, log, pct, summary  # noqa: E402
from tests.support.databases import fresh_postgres_database  # noqa: E402
from tests.support.harness import write_registry  # noqa: E402
from tests.support.process import AGENT_RUNTIME, ServiceProcess, write_config  # noqa: E402

RESULTS = REPO / "bench" / "results" / "replicas.json"
TERMINAL = {"task_completed", "task_failed", "task_cancelled", "task_rejected"}
TARGETS = {
    "cross_replica_approve_to_event_p50_ms": ("<=", 25.0),
    "orchestration_per_step_ms": ("<=", 1.5),
    "fanout_1000_clients_p99_ms": ("<=", 100.0),
    "fanout_1000_httpx_clients_p99_ms": ("<=", 100.0),
}
PG_STATS_SETTLE_SECONDS = 11.0
"""PostgreSQL 15 backends flush their statistics lazily: at most once a second while busy and, once
idle, within PGSTAT_IDLE_INTERVAL (10 s). pg_stat_database is read only after this long a quiet spell."""


@dataclass(frozen=True)
class Budget:
    latency_samples: int
    throughput_seconds_echo: float
    throughput_seconds_none: float
    clients: int
    step_count: int
    step_tasks: int
    fanout_clients: int
    fanout_wait_seconds: float


FULL = Budget(50, 8.0, 5.0, 12, 20, 2, 1000, 2.0)
QUICK = Budget(30, 6.0, 4.0, 12, 20, 2, 1000, 1.0)


# -- helpers -------------------------------------------------------------------------------------------


def fmt(s: dict[str, float], unit: str = "ms") -> str:
    return f"p50 {s['p50']:.2f} {unit}, p95 {s['p95']:.2f}, p99 {s['p99']:.2f}, max {s['max']:.2f} (n={s['n']})"


def ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU seconds at one instant: the machine's busy total and per process of each group."""

    at: float
    busy: float
    own: dict[int, float]
    replicas: dict[int, float]
    postgres: dict[int, float]


class CpuProbe:
    """Where the machine's CPU went during a phase: this bench process (clients + fake LLM), the
    service processes (with their MCP server children), PostgreSQL, and everything else.

    The machine may be shared; ``other_cores`` says how much of it others used meanwhile.
    """

    def __init__(self, pids: Callable[[], Iterable[int]]) -> None:
        self._pids = pids

    @staticmethod
    def _proc_cpu(pid: int) -> float:
        try:
            t = psutil.Process(pid).cpu_times()
        except psutil.Error:
            return 0.0
        return float(t.user + t.system + t.children_user + t.children_system)

    def _tree(self, pids: Iterable[int]) -> dict[int, float]:
        out: dict[int, float] = {}
        for pid in pids:
            out[pid] = self._proc_cpu(pid)
            try:
                for child in psutil.Process(pid).children(recursive=True):
                    out[child.pid] = self._proc_cpu(child.pid)
            except psutil.Error:
                pass
        return out

    @staticmethod
    def _postgres() -> dict[int, float]:
        out: dict[int, float] = {}
        for proc in psutil.process_iter(["name", "cpu_times"]):
            if proc.info["name"] and proc.info["name"].startswith("postgres") and proc.info["cpu_times"]:
                t = proc.info["cpu_times"]
                out[proc.pid] = float(t.user + t.system)
        return out

    def _snapshot(self) -> CpuSnapshot:
        t = psutil.cpu_times()
        busy = float(sum(t) - t.idle - getattr(t, "iowait", 0.0))
        me = psutil.Process().cpu_times()  # this process only: the replicas are its children
        own = {os.getpid(): float(me.user + me.system)}
        return CpuSnapshot(time.perf_counter(), busy, own, self._tree(self._pids()), self._postgres())

    def start(self) -> CpuProbe:
        self._before = self._snapshot()
        return self

    def stop(self) -> dict[str, float]:
        before, after = self._before, self._snapshot()
        wall = after.at - before.at

        def delta(then: dict[int, float], now: dict[int, float]) -> float:
            return sum(v - then.get(pid, 0.0) for pid, v in now.items())

        busy = after.busy - before.busy
        bench = delta(before.own, after.own)
        replicas = delta(before.replicas, after.replicas)
        pg = delta(before.postgres, after.postgres)
        return {
            "wall_s": wall,
            "machine_busy_cores": busy / wall,
            "bench_process_cores": bench / wall,
            "replicas_cores": replicas / wall,
            "postgres_cores": pg / wall,
            "other_cores": max(0.0, busy - bench - replicas - pg) / wall,
            "loadavg_1m": os.getloadavg()[0],
        }


def cpu_line(c: dict[str, float]) -> str:
    return (
        f"cpu over {c['wall_s']:.1f} s: machine {c['machine_busy_cores']:.2f} cores busy = bench process "
        f"{c['bench_process_cores']:.2f} + replicas (incl. MCP servers) {c['replicas_cores']:.2f} + postgres "
        f"{c['postgres_cores']:.2f} + others {c['other_cores']:.2f} (load avg {c['loadavg_1m']:.1f})"
    )


# -- the fake model: plans and tool calls chosen by the prompt ---------------------------------------

KIND = re.compile(r"bench (none|echo|steps=(\d+)|wait=([\d.]+)x(\d+)) #([\w-]+)")


def plan_for(prompt: str) -> dict[str, Any]:
    m = KIND.search(prompt)
    assert m is not None, prompt
    kind = m.group(1)
    if kind == "none":
        steps: list[tuple[str, list[str]]] = [("s1", [])]
    elif kind == "echo":
        steps = [("s1", ["example.echo"])]
    elif kind.startswith("steps="):
        steps = [(f"s{i}", ["example.echo"]) for i in range(1, int(m.group(2)) + 1)]
    else:
        steps = [("s1", ["example.wait"])]
    return {
        "summary": kind,
        "steps": [
            # One after another: the per-step figures are about a step's own orchestration.
            {"id": sid, "title": sid, "instruction": f"do {sid}", "tools": tools, "depends_on": [prev] if prev else []}
            for (sid, tools), prev in zip(steps, [None, *(sid for sid, _ in steps)], strict=False)
        ],
    }


def first_turn(prompt_blob: str, step_id: str) -> tuple[str, dict[str, Any]] | None:
    """The tool call the model makes in a step's first turn (None: answer with text)."""
    m = KIND.search(prompt_blob)
    assert m is not None
    kind = m.group(1)
    if kind == "none":
        return None
    if kind.startswith("wait="):
        return "example.wait", {"seconds": float(m.group(3)), "steps": int(m.group(4))}
    return "example.echo", {"text": f"{step_id} of #{m.group(5)}"}


def bench_calls(conversation: str, step_id: str) -> ToolCalls:
    """A step's first-turn calls for the task kind named in the conversation (none: answer "ok")."""
    call = first_turn(conversation, step_id)
    return [] if call is None else [call]


def bench_model() -> ScriptedModel:
    """The scripted test model with this benchmark's rules: plans and calls by the task kind in the
    prompt, one-delta answers ("ok" after a step's tools, "done" for the summary). Served behind the
    wire fake for the process runs and in process (zero latency) for the in-process run."""
    return ScriptedModel(plan_for, bench_calls, step_text="ok", summary_text="done", text_deltas=1)


class TimedASGI:
    """Wraps the fake LLM's app: wall-clock (request start, last body byte sent) per request."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.calls: list[tuple[float, float]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.time()

        async def timed_send(message: Any) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.calls.append((start, time.time()))

        await self.app(scope, receive, timed_send)


# -- cluster -----------------------------------------------------------------------------------------


@dataclass
class Rig:
    tmp: Path
    llm_root: str
    timed: TimedASGI
    db_url: str = ""
    replicas: list[ServiceProcess] = field(default_factory=list)
    stopped: set[int] = field(default_factory=set)
    log_statements: bool = False

    def pids(self) -> list[int]:
        return [r.pid for r in self.replicas if r.proc is not None and r.proc.poll() is None]

    def active(self) -> list[ServiceProcess]:
        return [r for i, r in enumerate(self.replicas) if i not in self.stopped]

    def pause(self, indexes: Iterable[int]) -> None:
        for i in indexes:
            if i not in self.stopped:
                self.replicas[i].signal(signal.SIGSTOP)
                self.stopped.add(i)

    def resume_all(self) -> None:
        for i in sorted(self.stopped):
            self.replicas[i].signal(signal.SIGCONT)
        self.stopped.clear()


def start_cluster(rig: Rig, size: int) -> float:
    registry = write_registry(rig.tmp)
    config = write_config(
        rig.tmp,
        database_url=rig.db_url,
        registry=registry,
        # production-like runner timings (write_config's test defaults are much shorter)
        runner={"lease_seconds": 10, "heartbeat_seconds": 3, "safety_poll_seconds": 2},
        server={"sse_ping_seconds": 15},  # log level stays info: readiness is read from uvicorn's log line
        limits={"max_steps_per_plan": 20},
    )
    subprocess.run([str(AGENT_RUNTIME), "migrate", "--config", str(config)], check=True, capture_output=True)
    rig.replicas = [
        ServiceProcess(config, llm_root=rig.llm_root, log_path=rig.tmp / f"replica-{i}.log") for i in range(size)
    ]
    started = time.perf_counter()
    threads = [threading.Thread(target=r.start, kwargs={"timeout": 120}) for r in rig.replicas]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in rig.replicas:
        assert r.proc is not None and r.proc.poll() is None, f"replica did not start; see {r.log_path}"
    return time.perf_counter() - started


def stop_cluster(rig: Rig) -> None:
    rig.resume_all()
    for r in rig.replicas:
        r.stop()


async def read_events(
    client: httpx.AsyncClient,
    task_id: str,
    *,
    after: int = 0,
    until: set[str] | None = None,
    timeout: float = 90,
) -> list[dict[str, Any]]:
    """SSE events (with receipt times) until one whose type is in ``until`` (default: terminal)."""
    until = (until or set()) | TERMINAL
    seen: list[dict[str, Any]] = []
    with anyio.fail_after(timeout):
        async with aconnect_sse(
            client, "GET", f"/v1/tasks/{task_id}/stream", headers={"Last-Event-ID": str(after)}
        ) as source:
            assert source.response.status_code == 200, await source.response.aread()
            async for sse in source.aiter_sse():
                if not sse.data:
                    continue
                event = json.loads(sse.data)
                event["recv_wall"] = time.time()
                event["sse_id"] = int(sse.id)
                seen.append(event)
                if sse.event in until:
                    break
    return seen


async def submit(client: httpx.AsyncClient, prompt: str) -> str:
    response = await client.post("/v1/tasks", json={"prompt": prompt})
    assert response.status_code == 202, response.text
    task_id: str = response.json()["id"]
    return task_id


async def approve(client: httpx.AsyncClient, task_id: str) -> None:
    response = await client.post(f"/v1/tasks/{task_id}/approve", json={"plan_version": 1})
    assert response.status_code in (200, 202), response.text


def clients_for(replicas: list[ServiceProcess], **kwargs: Any) -> list[httpx.AsyncClient]:
    kwargs.setdefault("timeout", httpx.Timeout(30, read=90))
    return [httpx.AsyncClient(base_url=r.url, **kwargs) for r in replicas]


async def close_all(clients: Iterable[httpx.AsyncClient]) -> None:
    for c in clients:
        await c.aclose()


async def gather_limited(n: int, limit: int, fn: Callable[[int], Awaitable[Any]]) -> list[Any]:
    sem = asyncio.Semaphore(limit)

    async def one(i: int) -> Any:
        async with sem:
            return await fn(i)

    return await asyncio.gather(*(one(i) for i in range(n)))


# -- 1. cross-replica latency ------------------------------------------------------------------------


async def bench_latency(rig: Rig, samples: int) -> dict[str, Any]:
    """Client on replica B follows a task; the approve POST goes to replica A; time to the event on B."""
    replicas = rig.active()
    assert len(replicas) == 3
    warmup = 5
    total = samples + warmup
    posts, streams = clients_for(replicas), clients_for(replicas)
    try:

        async def prepare(i: int) -> tuple[str, int]:
            r = i % 3
            task_id = await submit(posts[r], f"bench none #{i}")
            events = await read_events(streams[r], task_id, until={"approval_required"})
            return task_id, events[-1]["seq"]

        prepared = await gather_limited(total, 6, prepare)
        probe = CpuProbe(rig.pids).start()
        rows: list[dict[str, float]] = []
        for i, (task_id, seq) in enumerate(prepared):
            a, b = i % 3, (i + 1) % 3
            got: dict[str, float] = {}
            with anyio.fail_after(60):
                async with aconnect_sse(
                    streams[b], "GET", f"/v1/tasks/{task_id}/stream", headers={"Last-Event-ID": str(seq)}
                ) as source:
                    assert source.response.status_code == 200
                    await asyncio.sleep(0.05)  # the client is connected and idle, as in real use

                    async def post(a: int = a, task_id: str = task_id, got: dict[str, float] = got) -> None:
                        await approve(posts[a], task_id)
                        got["post_done"] = time.perf_counter()

                    sent = time.perf_counter()
                    poster = asyncio.create_task(post())
                    async for sse in source.aiter_sse():
                        if sse.event == "task_approved":
                            got["event"] = time.perf_counter()
                            got["event_wall"] = time.time()
                            got["created_at"] = ts(json.loads(sse.data)["created_at"])
                        if sse.event in TERMINAL:  # let the (tool-free) execution finish first
                            break
                    await poster
            if i >= warmup:
                rows.append(
                    {
                        "approve_to_event_ms": (got["event"] - sent) * 1000,
                        "approve_post_roundtrip_ms": (got["post_done"] - sent) * 1000,
                        "event_created_to_receipt_ms": (got["event_wall"] - got["created_at"]) * 1000,
                    }
                )
        cpu = probe.stop()
    finally:
        await close_all(posts + streams)
    to_event = summary([r["approve_to_event_ms"] for r in rows])
    roundtrip = summary([r["approve_post_roundtrip_ms"] for r in rows])
    to_receipt = summary([r["event_created_to_receipt_ms"] for r in rows])
    out = {
        "samples": len(rows),
        "approve_to_event_ms": to_event,
        "approve_post_roundtrip_ms": roundtrip,
        "event_created_to_receipt_ms": to_receipt,
        "event_before_post_response": sum(r["approve_to_event_ms"] < r["approve_post_roundtrip_ms"] for r in rows),
        "cpu": cpu,
    }
    log(f"[latency] approve on A -> task_approved on B: {fmt(to_event)}")
    log(f"[latency] approve POST round trip on A:      {fmt(roundtrip)}")
    log(f"[latency] event created_at -> receipt on B:  {fmt(to_receipt)}")
    log(f"[latency] {cpu_line(cpu)}")
    return out


# -- 2. throughput, 3 replicas vs 1 ------------------------------------------------------------------


async def run_load(rig: Rig, kind: str, clients: int, seconds: float, tag: str) -> dict[str, Any]:
    """``clients`` closed-loop clients, spread over the active replicas: submit, follow, approve, follow."""
    replicas = rig.active()
    posts, streams = clients_for(replicas), clients_for(replicas)
    done: list[float] = []
    durations: list[float] = []
    failed = 0
    failures: list[dict[str, Any]] = []
    counter = 0
    start = time.perf_counter()
    deadline = start + seconds

    async def worker(j: int) -> None:
        nonlocal failed, counter
        r = j % len(replicas)
        while time.perf_counter() < deadline:
            counter += 1
            began = time.perf_counter()
            task_id = await submit(posts[r], f"bench {kind} #{tag}{counter}")
            events = await read_events(streams[r], task_id, until={"approval_required", *TERMINAL})
            if events[-1]["type"] != "approval_required":
                failed += 1
                failures.append({"task_id": task_id, "last_event": events[-1]["type"], "data": events[-1]["data"]})
                continue
            await approve(posts[r], task_id)
            events = await read_events(streams[r], task_id, after=events[-1]["seq"])
            if events[-1]["type"] != "task_completed":
                failed += 1
                failures.append({"task_id": task_id, "last_event": events[-1]["type"], "data": events[-1]["data"]})
                continue
            finished = time.perf_counter()
            done.append(finished)
            durations.append((finished - began) * 1000)

    probe = CpuProbe(rig.pids).start()
    try:
        with anyio.fail_after(seconds + 120):
            await asyncio.gather(*(worker(j) for j in range(clients)))
    finally:
        await close_all(posts + streams)
    cpu = probe.stop()
    elapsed = max(done, default=start) - start
    latency = summary(durations)
    out = {
        "replicas": len(replicas),
        "kind": kind,
        "clients": clients,
        "completed": len(done),
        "failed": failed,
        "failures": failures[:3],
        "elapsed_s": elapsed,
        "tasks_per_second": len(done) / elapsed if elapsed > 0 else 0.0,
        "task_latency_ms": latency,
        "cpu": cpu,
        "cpu_seconds_per_task": {
            k.replace("_cores", "_cpu_s"): cpu[k] * cpu["wall_s"] / max(1, len(done))
            for k in ("bench_process_cores", "replicas_cores", "postgres_cores", "machine_busy_cores")
        },
    }
    log(
        f"[throughput] {kind:<4} {len(replicas)} replica(s), {clients} clients: {out['tasks_per_second']:.2f} tasks/s "
        f"({len(done)} in {elapsed:.1f} s, {failed} failed); submit->completed p50 "
        f"{latency['p50']:.0f} ms"
    )
    log(f"[throughput]   {cpu_line(cpu)}")
    for f in failures[:3]:
        log(f"[throughput]   FAILED {f['task_id']}: {f['last_event']} {json.dumps(f['data'])[:300]}")
    return out


async def bench_throughput(rig: Rig, budget: Budget) -> dict[str, Any]:
    runs: dict[str, Any] = {}
    for kind, seconds in (("echo", budget.throughput_seconds_echo), ("none", budget.throughput_seconds_none)):
        rig.resume_all()
        runs[f"{kind}_3"] = await run_load(rig, kind, budget.clients, seconds, f"{kind}3-")
        rig.pause([1, 2])  # SIGSTOP: idle replicas hold no lease; replica 0 serves alone
        runs[f"{kind}_1"] = await run_load(rig, kind, budget.clients, seconds, f"{kind}1-")
        rig.resume_all()
    for kind in ("echo", "none"):
        three, one = runs[f"{kind}_3"]["tasks_per_second"], runs[f"{kind}_1"]["tasks_per_second"]
        runs[f"{kind}_ratio_3_over_1"] = three / one if one else float("nan")
        log(f"[throughput] {kind}: 3 replicas / 1 replica = {runs[f'{kind}_ratio_3_over_1']:.2f}x")
    return runs


# -- 3. per-step overhead ----------------------------------------------------------------------------


def step_breakdown(
    events: list[dict[str, Any]], llm_calls: list[tuple[float, float]], *, steps: int
) -> list[dict[str, float]]:
    """Per step k (all but the last): period = step_started[k+1] - step_started[k]; orchestration =
    period - tool round trip (tool_call_completed.duration_ms) - LLM time of the calls started in it."""
    by_step: dict[str, dict[str, Any]] = {}
    for e in events:
        step = (e.get("data") or {}).get("step_id")
        if step is None:
            continue
        slot = by_step.setdefault(step, {})
        slot.setdefault(e["type"], e)
    rows: list[dict[str, float]] = []
    for k in range(1, steps):
        cur, nxt = by_step[f"s{k}"], by_step[f"s{k + 1}"]
        s0 = ts(cur["step_started"]["created_at"])
        s1 = ts(nxt["step_started"]["created_at"])
        c = ts(cur["tool_call_started"]["created_at"])
        d = ts(cur["tool_call_completed"]["created_at"])
        t = ts(cur["text_delta"]["created_at"])
        ended = ts(cur["step_completed"]["created_at"])
        tool = float(cur["tool_call_completed"]["data"]["duration_ms"]) / 1000
        llm = [(a, b) for a, b in llm_calls if s0 <= a < s1]
        llm_s = sum(b - a for a, b in llm)
        period = s1 - s0
        rows.append(
            {
                "period_ms": period * 1000,
                "tool_ms": tool * 1000,
                "llm_ms": llm_s * 1000,
                "llm_calls": float(len(llm)),
                "orchestration_ms": (period - tool - llm_s) * 1000,
                "seg_step_started_to_call_started_ms": (c - s0) * 1000,
                "seg_call_started_to_completed_minus_tool_ms": (d - c - tool) * 1000,
                "seg_call_completed_to_text_delta_ms": (t - d) * 1000,
                "seg_text_delta_to_step_completed_ms": (ended - t) * 1000,
                "seg_step_completed_to_next_step_ms": (s1 - ended) * 1000,
            }
        )
    return rows


def whole_task_per_step(events: list[dict[str, Any]], llm_calls: list[tuple[float, float]], *, steps: int) -> float:
    """(task_completed - first step_started - tool round trips - LLM time) / steps, in ms.

    From the first step (the task's servers are up) to the final commit, which waits for
    durability. The first step's start may linger up to ``journal_linger_ms`` (2 ms) before its
    commit stamps it: at most 0.1 ms per step of a 20-step plan, in the figure's favour."""
    first = {e["type"]: e for e in reversed(events)}
    started, completed = ts(first["step_started"]["created_at"]), ts(first["task_completed"]["created_at"])
    tool = sum(float(e["data"]["duration_ms"]) for e in events if e["type"] == "tool_call_completed") / 1000
    llm = sum(b - a for a, b in llm_calls if started <= a < completed)
    return (completed - started - tool - llm) * 1000 / steps


def summarize_steps(rows: list[dict[str, float]]) -> dict[str, Any]:
    keys = rows[0].keys() if rows else []
    return {
        "periods": len(rows),
        "median": {k: pct([r[k] for r in rows], 50) for k in keys},
        "mean": {k: statistics.fmean(r[k] for r in rows) for k in keys},
        "orchestration_ms": summary([r["orchestration_ms"] for r in rows]),
    }


async def bench_steps_process(rig: Rig, budget: Budget) -> dict[str, Any]:
    """The same N-step plan on a replica process; LLM time as the fake server saw it (server side)."""
    replica = rig.active()[0]
    [client] = clients_for([replica])
    rows: list[dict[str, float]] = []
    try:
        for i in range(budget.step_tasks):
            task_id = await submit(client, f"bench steps={budget.step_count} #p{i}")
            events = await read_events(client, task_id, until={"approval_required"})
            assert events[-1]["type"] == "approval_required", events[-1]
            await approve(client, task_id)
            events = await read_events(client, task_id, after=events[-1]["seq"])
            assert events[-1]["type"] == "task_completed", events[-1]
            rows += step_breakdown(events, list(rig.timed.calls), steps=budget.step_count)
    finally:
        await client.aclose()
    out = summarize_steps(rows)
    m = out["median"]
    log(
        f"[steps/process] per step (median of {len(rows)}): period {m['period_ms']:.2f} ms = tool "
        f"{m['tool_ms']:.2f} + LLM at the fake server {m['llm_ms']:.2f} + rest {m['orchestration_ms']:.2f} ms "
        "(rest = orchestration + the OpenAI SDK/HTTP client side of 2 LLM calls)"
    )
    return out


async def commit_latency(url: str, n: int = 60) -> dict[str, float]:
    """A one-row INSERT + COMMIT on a regular table: the WAL flush a durable commit waits for."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    out = {}
    try:
        await conn.execute("CREATE TABLE bench_commit_probe (a int)")
        for mode in ("on", "off"):
            await conn.execute(f"SET synchronous_commit = {mode}")
            samples = []
            for _ in range(n):
                started = time.perf_counter()
                async with conn.transaction():
                    await conn.execute("INSERT INTO bench_commit_probe VALUES (1)")
                samples.append((time.perf_counter() - started) * 1000)
            out[f"synchronous_commit_{mode}_p50_ms"] = pct(samples, 50)
        await conn.execute("DROP TABLE bench_commit_probe")
    finally:
        await conn.close()
    return out


async def bench_steps_in_process(tmp: Path, budget: Budget) -> dict[str, Any]:
    """The real runtime (store on PostgreSQL, bus, runner, pool, example MCP server) in this process:
    as configured (synchronous_commit on), with synchronous_commit off for the bench database only
    (separates the WAL flush wait from the rest), and what-ifs that change running objects only."""
    results: dict[str, Any] = {}
    async with fresh_postgres_database() as url:
        results["commit_probe"] = await commit_latency(url)
        log(
            "[steps/in-process] INSERT+COMMIT p50: synchronous_commit on "
            f"{results['commit_probe']['synchronous_commit_on_p50_ms']:.2f} ms, off "
            f"{results['commit_probe']['synchronous_commit_off_p50_ms']:.2f} ms"
        )
        variants = (("as_shipped", "on"), ("synchronous_commit_off", "off"))
        for label, mode in variants:
            admin = await asyncpg.connect(asyncpg_dsn(url))
            try:
                await admin.execute(f'ALTER DATABASE "{url.rsplit("/", 1)[1]}" SET synchronous_commit = {mode}')
            finally:
                await admin.close()
            work = tmp / f"inproc-{label}"
            work.mkdir()
            results[label] = await _steps_run(work, url, budget, label)
    return results


async def _steps_run(
    work: Path,
    url: str,
    budget: Budget,
    label: str,
) -> dict[str, Any]:
    """One in-process measurement of the runtime as shipped, observed through public hooks only
    (SQLAlchemy's engine and pool events, asyncpg's query loggers). With a single runtime on the
    database, every NOTIFY it receives is its own."""
    rows: list[dict[str, float]] = []
    step_cpu: list[float] = []
    whole: list[float] = []
    cpu_s = 0.0
    steps_measured = 0
    config = write_config(work, database_url=url, registry=write_registry(work))
    settings = load_settings(
        config,
        database={"url": url, "auto_migrate": True},
        limits={"max_steps_per_plan": budget.step_count},
        runner={"lease_seconds": 10, "heartbeat_seconds": 3, "safety_poll_seconds": 2},
        server={"log_level": "warning", "log_format": "json"},
    )
    configure_logging(settings.server)
    llm = bench_model().client()
    runtime = await build_runtime(settings, Overrides(planner_llm=bench_model().client(), executor_llm=llm))
    counted = {"sqlalchemy_statements": 0, "checkouts": 0, "event_fetches": 0}

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        counted["sqlalchemy_statements"] += 1
        if statement.lstrip().startswith("SELECT events."):
            counted["event_fetches"] += 1

    def checkout(*_: Any) -> None:
        counted["checkouts"] += 1

    store = runtime.store
    engine = store.engine.sync_engine
    sa_event.listen(engine, "before_cursor_execute", count)
    sa_event.listen(engine.pool, "checkout", checkout)
    trips = RoundTrips(engine)
    totals = dict.fromkeys([*counted, *trips.n], 0)
    try:
        with trips:
            async with anyio.create_task_group() as tg:
                await serve_background(runtime, tg)
                await runtime.catalog.wait_settled()  # as before: measure once the catalogue is known
                for i in range(budget.step_tasks):
                    task = await runtime.tasks.submit(f"bench steps={budget.step_count} #i{label}{i}", {})
                    await _wait_status(runtime, task.id, "awaiting_approval", "approval_required")
                    before, before_trips, before_cpu = dict(counted), dict(trips.n), time.process_time()
                    marks: list[float] = []

                    def mark(e: Any, marks: list[float] = marks) -> None:
                        if e.type == "step_started":
                            marks.append(time.process_time())

                    await runtime.tasks.approve(task.id, 1, None)
                    await _wait_status(runtime, task.id, "completed", "task_completed", on_event=mark)
                    step_cpu += [(b - a) * 1000 for a, b in zip(marks, marks[1:], strict=False)]
                    for k in counted:
                        totals[k] += counted[k] - before[k]
                    for k in trips.n:
                        totals[k] += trips.n[k] - before_trips[k]
                    cpu_s += time.process_time() - before_cpu
                    steps_measured += budget.step_count
                    events = [e.to_json() for e in await store.events_after(task.id, 0, 10_000)]
                    rows += step_breakdown(events, llm.spans, steps=budget.step_count)
                    whole.append(whole_task_per_step(events, llm.spans, steps=budget.step_count))
                tg.cancel_scope.cancel()
    finally:
        await stop_runtime(runtime)
    out = summarize_steps(rows)
    m = out["median"]
    # The headline: first step started -> task completed, minus tool and LLM time, divided by the
    # steps (includes the summary and the final commit). The per-step periods above come from
    # commit timestamps, which lingering records share.
    out["orchestration_ms_by_step_period"] = out["orchestration_ms"]
    out["orchestration_ms"] = summary(whole)
    for k, v in totals.items():
        out[f"{k}_per_step"] = v / max(1, steps_measured)
    out["service_cpu_ms_per_step_whole_task"] = cpu_s * 1000 / max(1, steps_measured)
    out["service_cpu_ms_per_step_period"] = summary(step_cpu)
    out["statements_per_step"] = out["sqlalchemy_statements_per_step"]
    tx_per_step = out["transactions_per_step"] = out["one_statement_writes_per_step"]
    out["orchestration_per_transaction_ms"] = m["orchestration_ms"] / tx_per_step if tx_per_step else float("nan")
    out["orchestration_ms_per_round_trip"] = m["orchestration_ms"] / max(1e-9, out["round_trips_per_step"])
    tag = f"[steps/in-process {label}]"
    log(
        f"{tag} per step (median of {len(rows)}): period {m['period_ms']:.2f} ms = tool "
        f"{m['tool_ms']:.2f} + LLM {m['llm_ms']:.3f} + orchestration {m['orchestration_ms']:.2f} ms"
    )
    log(f"{tag} orchestration per step, whole tasks (first step -> completed): {fmt(out['orchestration_ms'])}")
    log(f"{tag} orchestration per step period (commit timestamps): {fmt(out['orchestration_ms_by_step_period'])}")
    log(f"{tag} segments (median ms): " + ", ".join(f"{k[4:-3]} {v:.2f}" for k, v in m.items() if k.startswith("seg_")))
    log(
        f"{tag} per step (whole tasks, measured): {tx_per_step:.2f} write transactions "
        f"({out['one_statement_writes_per_step']:.2f} as one statement), {out['statements_per_step']:.2f} SQL "
        f"statements ({out['event_fetches_per_step']:.2f} event reads), {out['checkouts_per_step']:.2f} pool "
        f"checkouts, {out['round_trips_per_step']:.2f} round trips to PostgreSQL "
        f"({out['orchestration_ms_per_round_trip']:.2f} ms of orchestration each)"
    )
    log(
        f"{tag} CPU of this process per step period (service + MCP client side): "
        f"{fmt(out['service_cpu_ms_per_step_period'])}"
    )
    return out


class RoundTrips:
    """Counts, while entered, the requests this process sends to PostgreSQL and waits on, through
    public hooks: SQLAlchemy's ``before_cursor_execute`` (each statement it runs; a cached prepared
    statement is one round trip) and asyncpg's query loggers on every connection checked out
    (BEGIN/COMMIT/ROLLBACK, and the store's direct calls on the driver connection). Prepares of
    statements not yet cached and pool pings are not seen: a lower bound, exact once connections
    are warm. Also counts the store's ``agent_runtime_apply_v2`` calls: on PostgreSQL every write
    transaction on a task is one such call, so they are the task transactions."""

    def __init__(self, engine: Any) -> None:
        self.n = {"round_trips": 0, "one_statement_writes": 0}
        self._engine = engine
        self._drivers: dict[int, Any] = {}

    def _seen(self, statement: str) -> None:
        self.n["round_trips"] += 1
        if "agent_runtime_apply_v2(" in statement:
            self.n["one_statement_writes"] += 1

    def _on_statement(
        self, _conn: Any, _cursor: Any, statement: str, _params: Any, _context: Any, executemany: bool
    ) -> None:
        if not executemany:  # SQLAlchemy sends a batch through asyncpg's executemany: its logger sees it
            self._seen(statement)

    def _on_query(self, record: Any) -> None:  # asyncpg.connection.LoggedQuery
        self._seen(record.query)

    def _on_checkout(self, dbapi_connection: Any, *_: Any) -> None:
        driver = dbapi_connection.driver_connection
        if id(driver) not in self._drivers:
            driver.add_query_logger(self._on_query)
            self._drivers[id(driver)] = driver

    def __enter__(self) -> RoundTrips:
        sa_event.listen(self._engine, "before_cursor_execute", self._on_statement)
        sa_event.listen(self._engine.pool, "checkout", self._on_checkout)
        return self

    def __exit__(self, *_: object) -> None:
        sa_event.remove(self._engine, "before_cursor_execute", self._on_statement)
        sa_event.remove(self._engine.pool, "checkout", self._on_checkout)
        for driver in self._drivers.values():
            if not driver.is_closed():
                driver.remove_query_logger(self._on_query)
        self._drivers.clear()


async def _wait_status(
    runtime: Any,
    task_id: str,
    status: str,
    event: str,
    timeout: float = 60,
    on_event: Callable[[Any], None] | None = None,
) -> None:
    """Wait for ``event`` on the in-process bus; the store is read only at the start (and on overflow),
    so waiting adds no queries per event to what is measured."""
    sub = runtime.bus.subscribe(task_id)
    try:
        with anyio.fail_after(timeout):
            if (await runtime.store.get_task(task_id)).status == status:
                return
            while True:
                await sub.wait(5)
                stale = sub.overflowed
                sub.overflowed = False
                seen = sub.drain()
                if on_event is not None:
                    for e in seen:
                        on_event(e)
                if any(e.type == event for e in seen):
                    return
                if stale and (await runtime.store.get_task(task_id)).status == status:
                    return
    finally:
        runtime.bus.unsubscribe(sub)


# -- 4. 1,000 SSE clients on one replica -------------------------------------------------------------


async def pg_counters(db_url: str) -> dict[str, float]:
    """pg_stat_database for the bench database, read over a connection to another database."""
    name = db_url.rsplit("/", 1)[1]
    base = os.environ[PG_ENV]
    conn = await asyncpg.connect(asyncpg_dsn(base))
    try:
        row = await conn.fetchrow(
            "SELECT xact_commit, xact_rollback, tup_returned, tup_fetched, tup_inserted, tup_updated, blks_hit "
            "FROM pg_stat_database WHERE datname = $1",
            name,
        )
    finally:
        await conn.close()
    assert row is not None
    return {k: float(v) for k, v in dict(row).items()}


PG_LOG = Path("/var/log/postgresql/postgresql-15-main.log")


def pg_log_offset() -> int:
    try:
        return PG_LOG.stat().st_size
    except OSError:
        return -1


def pg_log_statements(db_url: str, offset: int, top: int = 12) -> dict[str, int]:
    """With --pg-log-statements: statements the bench database ran since ``offset`` (server log)."""
    if offset < 0:
        return {}
    name = db_url.rsplit("/", 1)[1]
    counts: dict[str, int] = {}
    with PG_LOG.open("rb") as f:
        f.seek(offset)
        for raw in f:
            line = raw.decode(errors="replace")
            if f"@{name} " not in line:
                continue
            m = re.search(r"(?:statement|execute [^:]*): (.*)", line)
            if m:
                key = re.sub(r"\$\d+", "?", m.group(1))[:90]
                counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1])[:top])


class Fan:
    """``n`` SSE readers on one task; each records (receipt wall time, the event's ``data`` line).

    ``mode="httpx"``: httpx streaming responses (one shared client with a raised connection limit).
    ``mode="raw"``: a minimal asyncio protocol per connection (hand-written GET, the chunked body
    scanned for ``data:`` lines), to show how much of the latency is the client's own CPU.
    """

    def __init__(self, base_url: str, task_id: str, after: int, n: int, mode: str) -> None:
        self.base_url, self.task_id, self.after, self.n, self.mode = base_url, task_id, after, n, mode
        self.connected = 0
        self.finished = 0
        self.received: list[list[tuple[float, bytes]]] = [[] for _ in range(n)]
        self.errors: list[str] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._client: httpx.AsyncClient | None = None
        self._done: list[asyncio.Future[None]] = []
        self._transports: list[asyncio.Transport] = []
        self._terminal: set[int] = set()

    async def connect(self, parallel: int = 100) -> None:
        sem = asyncio.Semaphore(parallel)
        self._ready = [asyncio.Event() for _ in range(self.n)]
        if self.mode == "httpx":
            limits = httpx.Limits(max_connections=self.n + 10, max_keepalive_connections=self.n + 10)
            self._client = httpx.AsyncClient(base_url=self.base_url, timeout=httpx.Timeout(120), limits=limits)
            for i in range(self.n):
                self._tasks.append(asyncio.create_task(self._httpx_reader(i, sem)))
        else:
            for i in range(self.n):
                self._tasks.append(asyncio.create_task(self._raw_reader(i, sem)))
        with anyio.fail_after(120):
            for ready in self._ready:
                await ready.wait()

    def _scan(self, i: int, now: float, buf: bytes) -> bytes:
        """Record complete ``data:`` lines; return the unconsumed tail. True terminal -> finished."""
        out = self.received[i]
        while True:
            nl = buf.find(b"\n")
            if nl < 0:
                return buf
            line, buf = buf[: nl + 1].strip(), buf[nl + 1 :]
            if line.startswith(b"data:"):
                out.append((now, line[5:].strip()))
            elif line.startswith(b"event:") and line[6:].strip().decode() in TERMINAL:
                self._terminal.add(i)

    async def _httpx_reader(self, i: int, sem: asyncio.Semaphore) -> None:
        assert self._client is not None
        headers = {"Last-Event-ID": str(self.after)}
        try:
            async with sem:
                request = self._client.build_request("GET", f"/v1/tasks/{self.task_id}/stream", headers=headers)
                response = await self._client.send(request, stream=True)
            try:
                assert response.status_code == 200, response.status_code
                self.connected += 1
                self._ready[i].set()
                buf = b""
                async for chunk in response.aiter_raw():
                    buf = self._scan(i, time.time(), buf + chunk)
            finally:
                await response.aclose()
            self.finished += i in self._terminal
        except Exception as exc:  # a failed client is reported, not hidden
            self.errors.append(f"{type(exc).__name__}: {exc}")
            self._ready[i].set()

    async def _raw_reader(self, i: int, sem: asyncio.Semaphore) -> None:
        fan = self
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        class Reader(asyncio.Protocol):
            buf = b""
            headers_seen = False

            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport

            def data_received(self, data: bytes) -> None:
                now = time.time()
                self.buf += data
                if not self.headers_seen:
                    head, sep, rest = self.buf.partition(b"\r\n\r\n")
                    if not sep:
                        return
                    if not head.startswith(b"HTTP/1.1 200"):
                        fan.errors.append(head.split(b"\r\n", 1)[0].decode())
                    self.headers_seen, self.buf = True, rest
                    fan.connected += 1
                    fan._ready[i].set()
                self.buf = fan._scan(i, now, self.buf)
                if i in fan._terminal:
                    self.transport.close()  # the stream is over (the connection itself is keep-alive)

            def connection_lost(self, exc: Exception | None) -> None:
                if not done.done():
                    done.set_result(None)

        host, port = self.base_url.removeprefix("http://").split(":")
        try:
            async with sem:
                transport, _ = await loop.create_connection(Reader, host, int(port))
                request = (
                    f"GET /v1/tasks/{self.task_id}/stream HTTP/1.1\r\nHost: {host}:{port}\r\n"
                    f"Accept: text/event-stream\r\nLast-Event-ID: {self.after}\r\n\r\n"
                )
                transport.write(request.encode())
            self._transports.append(transport)
            await done
            self.finished += i in self._terminal
        except Exception as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}")
            self._ready[i].set()

    async def wait(self, timeout: float) -> None:
        with anyio.fail_after(timeout):
            await asyncio.gather(*self._tasks)

    async def aclose(self) -> None:
        for t in self._transports:
            t.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    def latencies(self) -> tuple[list[float], dict[int, list[float]], dict[int, tuple[str, float]]]:
        """Receipt minus created_at (ms) for every delivery, per event seq, and each seq's type and created_at."""
        all_ms: list[float] = []
        per_seq: dict[int, list[float]] = {}
        types: dict[int, tuple[str, float]] = {}
        for deliveries in self.received:
            for recv, data in deliveries:
                event = json.loads(data)
                created = ts(event["created_at"])
                ms = (recv - created) * 1000
                all_ms.append(ms)
                per_seq.setdefault(event["seq"], []).append(ms)
                types[event["seq"]] = (event["type"], created)
        return all_ms, per_seq, types


async def metric_value(client: httpx.AsyncClient, name: str) -> float | None:
    text = (await client.get("/metrics")).text
    for line in text.splitlines():
        if not line.startswith("#") and name in line.split(" ")[0]:
            return float(line.rsplit(" ", 1)[1])
    return None


def fan_report(fan: Fan, cpu: dict[str, float], workload_s: float) -> dict[str, Any]:
    all_ms, per_seq, types = fan.latencies()
    spread = [max(v) - min(v) for v in per_seq.values() if len(v) > 1]
    expected = max(per_seq, default=0) - fan.after
    return {
        "clients": fan.n,
        "reader": fan.mode,
        "connected": fan.connected,
        "finished_with_terminal_event": fan.finished,
        "clients_missing_events": sum(len(r) < expected for r in fan.received),
        "errors": fan.errors[:5],
        "error_count": len(fan.errors),
        "events_per_client": len(all_ms) / max(1, fan.connected),
        "deliveries": len(all_ms),
        "latency_ms": summary(all_ms),
        "per_event_first_to_last_client_ms": summary(spread) if spread else None,
        "per_event": [
            {"seq": seq, "type": types[seq][0], "created": types[seq][1], "p50_ms": pct(v, 50), "max_ms": max(v)}
            for seq, v in sorted(per_seq.items())
        ],
        "workload_s": workload_s,
        "deliveries_per_second": len(all_ms) / workload_s if workload_s else float("nan"),
        "cpu": cpu,
    }


def log_fan(run: dict[str, Any]) -> None:
    log(
        f"[fanout] {run['clients']:>4} {run['reader']} clients: {run['deliveries']} deliveries "
        f"({run['events_per_client']:.1f} events each, {run['clients_missing_events']} clients missing events, "
        f"{run['error_count']} errors) in {run['workload_s']:.1f} s: created_at->receipt {fmt(run['latency_ms'])}"
    )
    if run["per_event_first_to_last_client_ms"]:
        log(f"[fanout]        per event, first->last client: {fmt(run['per_event_first_to_last_client_ms'])}")
    log(f"[fanout]        {cpu_line(run['cpu'])}")


async def bench_fanout(rig: Rig, budget: Budget) -> dict[str, Any]:
    """One replica. Three tasks wait for approval; 10 httpx clients follow the first, 1,000 httpx
    clients the second, 1,000 raw-socket clients the third. With everyone connected and the database
    quiet, each task is approved in turn and pg_stat_database is read before and after."""
    rig.pause(range(1, len(rig.replicas)))
    replica = rig.active()[0]
    big = budget.fanout_clients
    groups = (("small", 10, "httpx"), ("big", big, "httpx"), ("big_raw", big, "raw"))
    [control] = clients_for([replica])
    runs: dict[str, Any] = {}
    fans: dict[str, Fan] = {}
    try:
        prepared: dict[str, tuple[str, int]] = {}
        for name, _, _ in groups:
            task_id = await submit(control, f"bench wait={budget.fanout_wait_seconds}x20 #fan-{name}")
            events = await read_events(control, task_id, until={"approval_required"})
            assert events[-1]["type"] == "approval_required", events[-1]
            prepared[name] = (task_id, events[-1]["seq"])
        for name, n, mode in groups:
            task_id, seq = prepared[name]
            fan = Fan(replica.url, task_id, seq, n, mode)
            started = time.perf_counter()
            await fan.connect()
            log(f"[fanout] {fan.connected}/{n} {mode} clients connected in {time.perf_counter() - started:.1f} s")
            fans[name] = fan
        runs["sse_clients_gauge"] = await metric_value(control, "sse_clients")
        log(f"[fanout] replica reports {runs['sse_clients_gauge']} SSE clients connected")
        log(f"[fanout] waiting {PG_STATS_SETTLE_SECONDS:.0f} s for PostgreSQL's statistics to settle")
        await asyncio.sleep(PG_STATS_SETTLE_SECONDS)
        before = await pg_counters(rig.db_url)
        # This process is the measuring instrument: with 2,010 open connections one of its full garbage
        # collections takes 100-200 ms and would be counted as delivery latency. Park what exists
        # (gc.freeze) and collect nothing until the runs are over.
        gc.collect()
        gc.freeze()
        gc.disable()
        for name, _, _ in groups:
            fan = fans[name]
            probe = CpuProbe(rig.pids).start()
            log_offset = pg_log_offset() if rig.log_statements else -1
            window = time.perf_counter()
            await approve(control, prepared[name][0])
            await fan.wait(120)
            workload_s = time.perf_counter() - window
            run = fan_report(fan, probe.stop(), workload_s)
            runs[name] = run
            if rig.log_statements:
                run["pg_log_statements"] = pg_log_statements(rig.db_url, log_offset)
                log(f"[fanout]        statements: {run['pg_log_statements']}")
            log_fan(run)
            if name == "big_raw":
                continue  # the DB-load comparison uses the two httpx runs
            await asyncio.sleep(PG_STATS_SETTLE_SECONDS)
            after = await pg_counters(rig.db_url)
            run["pg_window_s"] = time.perf_counter() - window
            run["pg_delta"] = d = {k: after[k] - before[k] for k in after}
            before = after
            log(
                f"[fanout]        pg_stat_database over {run['pg_window_s']:.1f} s: "
                f"xact_commit {d['xact_commit']:.0f}, xact_rollback {d['xact_rollback']:.0f}, "
                f"tup_returned {d['tup_returned']:.0f}, tup_fetched {d['tup_fetched']:.0f}"
            )
    finally:
        gc.enable()
        gc.unfreeze()
        for fan in fans.values():
            await fan.aclose()
        await control.aclose()
        rig.resume_all()
    for name in ("big", "big_raw"):
        # CPU per delivery, net of the task's own work (the 10-client run: same task, same tool).
        run, base = runs[name], runs["small"]
        extra = run["deliveries"] - base["deliveries"]
        for key, side in (("replicas_cores", "replica"), ("bench_process_cores", "client")):
            spent = run["cpu"][key] * run["cpu"]["wall_s"] - base["cpu"][key] * base["cpu"]["wall_s"]
            run[f"{side}_cpu_us_per_delivery"] = spent / extra * 1e6 if extra else float("nan")
        log(
            f"[fanout] {run['reader']} clients, CPU per delivery net of the task's own: "
            f"replica {run['replica_cpu_us_per_delivery']:.0f} us, "
            f"bench client {run['client_cpu_us_per_delivery']:.0f} us"
        )
    small, large = runs["small"]["pg_delta"], runs["big"]["pg_delta"]
    keys = ("xact_commit", "xact_rollback", "tup_returned", "tup_fetched")
    runs["pg_ratio_big_over_small"] = {k: (large[k] / small[k] if small[k] else float("nan")) for k in keys}
    extra = (large["xact_commit"] + large["xact_rollback"]) - (small["xact_commit"] + small["xact_rollback"])
    runs["extra_transactions_per_extra_client"] = extra / (big - 10)
    log(
        f"[fanout] DB load, {big} vs 10 clients: "
        + ", ".join(f"{k} x{v:.2f}" for k, v in runs["pg_ratio_big_over_small"].items())
        + f"; extra transactions per extra client: {runs['extra_transactions_per_extra_client']:.3f}"
    )
    return runs


# -- main --------------------------------------------------------------------------------------------


async def machine_info() -> dict[str, Any]:
    conn = await asyncpg.connect(asyncpg_dsn(os.environ[PG_ENV]))
    try:
        version = await conn.fetchval("SHOW server_version")
        sync = await conn.fetchval("SHOW synchronous_commit")
        fsync = await conn.fetchval("SHOW fsync")
    finally:
        await conn.close()
    return {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "postgres": version,
        "postgres_synchronous_commit": sync,
        "postgres_fsync": fsync,
        "loadavg_at_start": os.getloadavg(),
        **code_version(),
    }


def verdicts(results: dict[str, Any]) -> dict[str, Any]:
    got: dict[str, float] = {}
    if "latency" in results:
        got["cross_replica_approve_to_event_p50_ms"] = results["latency"]["approve_to_event_ms"]["p50"]
    if "steps" in results:
        steps = results["steps"]["in_process"]["as_shipped"]
        got["orchestration_per_step_ms"] = steps["orchestration_ms"]["p50"]
    if "fanout" in results:
        # The replica's figure: measured with the raw-socket readers. The 1,000 httpx readers in this
        # one process need more CPU than the machine has at this event rate (client_cpu_us_per_delivery).
        got["fanout_1000_clients_p99_ms"] = results["fanout"]["big_raw"]["latency_ms"]["p99"]
        got["fanout_1000_httpx_clients_p99_ms"] = results["fanout"]["big"]["latency_ms"]["p99"]
    out = {}
    for key, value in got.items():
        op, target = TARGETS[key]
        ok = value <= target if op == "<=" else value >= target
        out[key] = {"measured": value, "target": f"{op} {target}", "met": ok}
    return out


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    budget = QUICK if args.quick else FULL
    parts = set(args.only.split(",")) if args.only else {"latency", "throughput", "steps", "fanout"}
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 8192:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(8192, hard), hard))  # replicas inherit it
    results: dict[str, Any] = {"mode": "quick" if args.quick else "full", "machine": await machine_info()}
    log(f"machine: {results['machine']}")
    began = time.perf_counter()
    fake = bench_model().fake()
    timed = TimedASGI(fake.app)
    fake.app = timed  # type: ignore[assignment]
    with tempfile.TemporaryDirectory(prefix="bench-replicas-") as tmp_name, serve_on_loopback(fake) as root:
        tmp = Path(args.keep) if args.keep else Path(tmp_name)
        tmp.mkdir(parents=True, exist_ok=True)
        rig = Rig(tmp, root, timed)
        if parts & {"latency", "throughput", "fanout", "steps"}:
            async with fresh_postgres_database() as url:
                rig.db_url = url
                if args.pg_log_statements:  # diagnostics only: every statement of this database to the server log
                    rig.log_statements = True
                    admin = await asyncpg.connect(asyncpg_dsn(url))
                    try:
                        await admin.execute(f"ALTER DATABASE \"{url.rsplit('/', 1)[1]}\" SET log_statement = 'all'")
                    finally:
                        await admin.close()
                boot = start_cluster(rig, 3)
                log(f"3 replicas up in {boot:.1f} s (started in parallel)")
                try:
                    if "latency" in parts:
                        results["latency"] = await bench_latency(rig, budget.latency_samples)
                    if "steps" in parts:
                        results.setdefault("steps", {})["process"] = await bench_steps_process(rig, budget)
                    if "throughput" in parts:
                        results["throughput"] = await bench_throughput(rig, budget)
                    if "fanout" in parts:
                        results["fanout"] = await bench_fanout(rig, budget)
                finally:
                    stop_cluster(rig)
        if parts & {"steps", "inproc"}:
            results.setdefault("steps", {})["in_process"] = await bench_steps_in_process(tmp, budget)
        if fake.responder_errors:
            results["responder_errors"] = [repr(e) for e in fake.responder_errors]
    results["seconds"] = time.perf_counter() - began
    results["machine"]["loadavg_at_end"] = os.getloadavg()
    results["targets"] = verdicts(results)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples, shorter windows")
    parser.add_argument(
        "--only", help="comma-separated: latency,throughput,steps,fanout (inproc: steps in process only)"
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--keep", help="keep configs and replica logs in this directory")
    parser.add_argument(
        "--pg-log-statements",
        action="store_true",
        help="diagnostics: log_statement=all for the bench database; fan-out runs report statement counts",
    )
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(json.dumps(results["targets"], indent=2))
    log(f"total {results['seconds']:.0f} s; wrote {args.output}")


if __name__ == "__main__":
    main()
