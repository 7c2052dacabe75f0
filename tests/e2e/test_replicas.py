"""Scale-out on PostgreSQL: three real service processes on 127.0.0.1 sharing one database.

The fake LLM server runs in the test process on loopback; the example MCP server (stdio) keeps its
own record of every call, which is what proves that completed steps never ran twice.
"""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from agent_runtime.testing import RecordedRequest, Reply, ScriptedCall, ToolCalls, serve_on_loopback, wire
from tests.support.databases import fresh_postgres_database, require_postgres
from tests.support.harness import write_registry
from tests.support.process import AGENT_RUNTIME, write_config
from tests.support.replicas import TERMINAL, Cluster, follow, lease_owner_pid

pytestmark = pytest.mark.e2e

TASK_NUMBER = re.compile(r"task (\d+)")
UNSAFE = "    tools:\n      wait: {idempotent: false}\n"


def _plan(i: int) -> dict[str, Any]:
    server = "unsafe" if i % 2 else "example"  # odd tasks wait on a tool that must not be repeated
    return {
        "summary": f"task {i}",
        "steps": [
            # One after another: a kill lands in the wait with the steps before it completed.
            {"id": "s1", "title": "add", "instruction": f"add {i}", "tools": ["example.add"], "depends_on": []},
            {
                "id": "s2",
                "title": "note",
                "instruction": f"note {i}",
                "tools": ["example.write_note"],
                "depends_on": ["s1"],
            },
            {
                "id": "s3",
                "title": "wait",
                "instruction": f"wait {i}",
                "tools": [f"{server}.wait"],
                "depends_on": ["s2"],
            },
            {"id": "s4", "title": "echo", "instruction": f"echo {i}", "tools": ["example.echo"], "depends_on": ["s3"]},
        ],
    }


def _calls(i: int, step: str) -> ToolCalls:
    server = "unsafe" if i % 2 else "example"
    by_step: dict[str, ToolCalls] = {
        "s1": [("example.add", {"a": i, "b": 1000})],
        "s2": [("example.write_note", {"name": f"n{i}", "text": "x"})],
        "s3": [(f"{server}.wait", {"seconds": 3, "steps": 3})],
        "s4": [("example.echo", {"text": f"t{i}"})],
    }
    return by_step[step]


def responder(request: RecordedRequest) -> Reply:
    """Plans and tool calls keyed by the task number written in the prompt ("task <i>")."""
    body = request.body
    messages: list[dict[str, Any]] = body["messages"]
    match = TASK_NUMBER.search(json.dumps(messages))
    assert match is not None, "every prompt in these tests names its task number"
    i = int(match.group(1))
    if "response_format" in body:
        return Reply(json=_plan(i))
    if messages[-1]["role"] == "tool":
        return Reply(text=f"step done for task {i}")
    prompt = str(messages[-1]["content"])
    for step in ("s1", "s2", "s3", "s4"):
        if f"Your step ({step}:" in prompt:
            return Reply.calls(*[ScriptedCall(name=wire(t), arguments=a) for t, a in _calls(i, step)])
    return Reply(text=f"summary of task {i}")


@pytest.fixture
def llm_root() -> Iterator[str]:
    from agent_runtime.testing import FakeLLM

    with serve_on_loopback(FakeLLM(responder=responder)) as root:
        yield root


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    require_postgres()
    async with fresh_postgres_database() as url:
        yield url


def _cluster(tmp: Path, pg_url: str, llm_root: str, size: int, **sections: Any) -> tuple[Cluster, Path]:
    log = tmp / "calls.jsonl"
    extra = (
        "  - id: unsafe\n    type: local_stdio\n    config:\n      command: ${PYTHON}\n"
        f"      args: ['{Path(__file__).resolve().parents[2] / 'examples/mcp_server/server.py'}']\n"
        f"      env: {{EXAMPLE_MCP_CALL_LOG: '{log}'}}\n" + UNSAFE
    )
    registry = write_registry(tmp, call_log=log, extra=extra)
    auth = {"mode": "keys", "bootstrap_admin_key": False, **sections.pop("auth", {})}
    config = write_config(tmp, database_url=pg_url, registry=registry, auth=auth, **sections)
    subprocess.run([str(AGENT_RUNTIME), "migrate", "--config", str(config)], check=True, capture_output=True)
    # Authentication is on, as in production: keys made with the CLI, as an operator would.
    submitter, approver = (
        _key(config, subject, role) for subject, role in (("sam", "submitter"), ("alice", "approver"))
    )
    headers = {"Authorization": f"Bearer {approver}"}
    return Cluster(
        config, llm_root, tmp, size, headers=headers, submit_headers={"Authorization": f"Bearer {submitter}"}
    ), log


def _key(config: Path, subject: str, role: str) -> str:
    """``agent-runtime keys create``: the key is the last line of its stdout."""
    done = subprocess.run(
        [str(AGENT_RUNTIME), "keys", "create", "--config", str(config), "--subject", subject, "--tenant", "acme",
         "--role", role],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    key = done.stdout.strip().splitlines()[-1]
    assert key.startswith("ar_") and key not in done.stderr
    return key


def _records(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


async def _submit_and_approve(cluster: Cluster, prompts: list[str]) -> list[str]:
    ids: list[str] = []
    replicas = cluster.live()
    for n, prompt in enumerate(prompts):
        async with httpx.AsyncClient(
            base_url=replicas[n % len(replicas)].url, timeout=30, headers=cluster.headers
        ) as client:
            response = await client.post("/v1/tasks", json={"prompt": prompt}, headers=cluster.submit_headers)
            ids.append(response.json()["id"])
    for n, task_id in enumerate(ids):
        events, _ = await follow(
            cluster, task_id, until=lambda e: e["sse_event"] in ("approval_required", *TERMINAL), start_at=n + 1
        )
        assert events[-1]["sse_event"] == "approval_required", events[-1]
        async with httpx.AsyncClient(
            base_url=replicas[(n + 2) % len(replicas)].url, timeout=30, headers=cluster.headers
        ) as client:
            response = await client.post(f"/v1/tasks/{task_id}/approve", json={"plan_version": 1})
            assert response.status_code == 202, response.text
    return ids


async def test_three_replicas_survive_kill_9_without_repeating_completed_or_unsafe_work(
    tmp_path: Path, pg_url: str, llm_root: str
) -> None:
    rng = random.Random(20261121)
    cluster, log = _cluster(tmp_path, pg_url, llm_root, 3)
    cluster.start()
    try:
        count = 6
        ids = await _submit_and_approve(cluster, [f"task {i}" for i in range(count)])
        killed: list[str] = []
        for victim_task in rng.sample(range(count), 2):  # two kills at moments chosen by the seed
            task_id = ids[victim_task]
            # (the first kill may already have left this task waiting for an operator: needs_attention)
            await follow(
                cluster, task_id, until=lambda e: e["sse_event"] in ("tool_progress", "needs_attention", *TERMINAL)
            )
            pid = await lease_owner_pid(pg_url, task_id)
            if pid is None or pid not in {r.pid for r in cluster.replicas}:
                continue  # finished, or still leased by the replica the first kill took (until it expires)
            victim = cluster.by_pid(pid)
            victim.kill9()
            killed.append(task_id)
            victim.start()  # the platform restarts it; its old leases still expire before takeover
        assert killed, "no kill happened: the scenario did not exercise takeover"

        results: dict[str, list[dict[str, Any]]] = {}
        for n, task_id in enumerate(ids):
            events, _ = await follow(
                cluster, task_id, until=lambda e: e["sse_event"] in (*TERMINAL, "needs_attention"), start_at=n
            )
            if events[-1]["sse_event"] == "needs_attention":
                i = ids.index(task_id)
                assert i % 2 == 1, "only the unsafe wait may need attention"
                starts = [r for r in _records(log) if r["tool"] == "wait" and r["event"] == "start"]
                mine = [r for r in starts if r["arguments"]["seconds"] == 3 and r["pid"]]
                assert mine, "the in-doubt call was recorded by the server"
                call_id = events[-1]["data"]["tool_call_id"]
                async with httpx.AsyncClient(
                    base_url=cluster.live()[n % 3].url, timeout=30, headers=cluster.headers
                ) as client:
                    response = await client.post(
                        f"/v1/tasks/{task_id}/resolve", json={"tool_call_id": call_id, "action": "retry"}
                    )
                    assert response.status_code == 200, response.text
                more, _ = await follow(cluster, task_id, after=events[-1]["sse_id"])
                events += more
            ids_seen = [e["sse_id"] for e in events]  # read across kills and reconnects
            assert ids_seen == list(range(1, len(events) + 1)), f"{task_id}: gap or duplicate in {ids_seen}"
            full, _ = await follow(cluster, task_id, start_at=n + 1)  # the whole log again, another replica
            assert [(e["sse_id"], e["sse_event"]) for e in full] == [(e["sse_id"], e["sse_event"]) for e in events]
            results[task_id] = events

        for task_id, events in results.items():
            assert events[-1]["sse_event"] == "task_completed", (task_id, [e["sse_event"] for e in events])
        records = _records(log)
        for i in range(count):
            for tool, key, value in (("add", "a", i), ("write_note", "name", f"n{i}"), ("echo", "text", f"t{i}")):
                starts = [
                    r for r in records if r["tool"] == tool and r["event"] == "start" and r["arguments"][key] == value
                ]
                assert len(starts) == 1, f"task {i}: {tool} ran {len(starts)} times"
        takeovers = [e for events in results.values() for e in events if e["sse_event"] == "task_resumed"]
        assert takeovers, "no task was taken over by another replica"
        served_by = {e["replica"] for events in results.values() for e in events}
        assert len(served_by) >= 2, "streams were served by one replica only"
    finally:
        cluster.stop()


async def test_a_paused_replica_past_its_lease_cannot_overwrite_the_new_owner(
    tmp_path: Path, pg_url: str, llm_root: str
) -> None:
    cluster, _ = _cluster(tmp_path, pg_url, llm_root, 2)
    cluster.start()
    try:
        [task_id] = await _submit_and_approve(cluster, ["task 0"])
        await follow(cluster, task_id, until=lambda e: e["sse_event"] == "tool_progress")
        pid = await lease_owner_pid(pg_url, task_id)
        assert pid is not None
        paused = cluster.by_pid(pid)
        lease_lost = paused.expect("lease_lost")
        paused.signal(signal.SIGSTOP)
        try:
            events, _ = await follow(
                _Without(cluster, paused), task_id, until=lambda e: e["sse_event"] in TERMINAL, timeout=180
            )
        finally:
            paused.signal(signal.SIGCONT)
        assert events[-1]["sse_event"] == "task_completed"
        # Let the woken replica try to write: its heartbeat and its in-flight call finish now.
        assert await anyio.to_thread.run_sync(lease_lost.wait, 30), "the woken replica never noticed"
        full, _ = await follow(cluster, task_id)
        assert full[-1]["sse_event"] == "task_completed"
        assert [e["sse_id"] for e in full] == list(range(1, len(full) + 1))
        assert sum(e["sse_event"] == "task_completed" for e in full) == 1
    finally:
        cluster.stop()


async def test_a_hundred_concurrent_approvals_across_replicas_execute_once(
    tmp_path: Path, pg_url: str, llm_root: str
) -> None:
    cluster, _ = _cluster(tmp_path, pg_url, llm_root, 3)
    cluster.start()
    try:
        async with httpx.AsyncClient(base_url=cluster.replicas[0].url, timeout=30, headers=cluster.headers) as client:
            response = await client.post("/v1/tasks", json={"prompt": "task 0"}, headers=cluster.submit_headers)
            task_id = response.json()["id"]
        await follow(cluster, task_id, until=lambda e: e["sse_event"] == "approval_required")
        codes: list[int] = []
        clients = [httpx.AsyncClient(base_url=r.url, timeout=60, headers=cluster.headers) for r in cluster.replicas]

        async def approve(n: int) -> None:
            response = await clients[n % 3].post(f"/v1/tasks/{task_id}/approve", json={"plan_version": 1})
            codes.append(response.status_code)

        try:
            async with anyio.create_task_group() as tg:
                for n in range(100):
                    tg.start_soon(approve, n)
        finally:
            for c in clients:
                await c.aclose()
        assert codes.count(202) == 1 and set(codes) <= {200, 202, 409}
        events, _ = await follow(cluster, task_id)
        types = [e["sse_event"] for e in events]
        assert types.count("task_approved") == 1 and types.count("execution_started") == 1
        assert types[-1] == "task_completed"
    finally:
        cluster.stop()


async def test_sigterm_during_execution_hands_the_work_over_and_exits_zero(
    tmp_path: Path, pg_url: str, llm_root: str
) -> None:
    cluster, log = _cluster(tmp_path, pg_url, llm_root, 2, server={"shutdown_grace_seconds": 0.5})
    cluster.start()
    try:
        [task_id] = await _submit_and_approve(cluster, ["task 0"])
        before, _ = await follow(cluster, task_id, until=lambda e: e["sse_event"] == "tool_progress")
        pid = await lease_owner_pid(pg_url, task_id)
        assert pid is not None
        leaving = cluster.by_pid(pid)
        leaving.signal(signal.SIGTERM)
        async with httpx.AsyncClient(base_url=leaving.url, timeout=10, headers=cluster.headers) as client:
            ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["draining"] is True
        assert leaving.wait(timeout=60) == 0
        rest, _ = await follow(cluster, task_id, after=before[-1]["sse_id"])
        assert rest[-1]["sse_event"] == "task_completed"
        assert rest[0]["sse_id"] == before[-1]["sse_id"] + 1
        assert "task_resumed" in [e["sse_event"] for e in rest]
        adds = [r for r in _records(log) if r["tool"] == "add" and r["event"] == "start"]
        assert len(adds) == 1
    finally:
        cluster.stop()


class _Without(Cluster):
    """The cluster minus one replica (a paused one still 'runs' but cannot answer)."""

    def __init__(self, cluster: Cluster, excluded: Any) -> None:
        self.replicas = [r for r in cluster.replicas if r is not excluded]
        self.headers, self.submit_headers = cluster.headers, cluster.submit_headers
