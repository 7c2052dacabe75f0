"""Policy gates are durable: a call gate survives ``kill -9`` of the service, and an expiry timer
fires once when two replicas sweep the same PostgreSQL database.

Real service processes on 127.0.0.1, the real OpenAI SDK against the fake LLM on loopback, and the
example MCP server over stdio whose own call record proves what ran.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from agent_runtime.testing import ScriptedModel, serve_on_loopback
from tests.support.databases import database_url, fresh_postgres_database, require_postgres
from tests.support.harness import read_stream, write_registry
from tests.support.process import AGENT_RUNTIME, ServiceProcess, write_config

pytestmark = pytest.mark.e2e

PLAN = {
    "summary": "write a note",
    "steps": [{"id": "s1", "title": "note", "instruction": "note", "tools": ["example.write_note"], "depends_on": []}],
}
CALLS = {"s1": [("example.write_note", {"name": "n1", "text": "hello"})]}
GATE = """
call_rules:
  - id: notes-gate
    match: {name: [example.write_note]}
    decision: require_call_approval
"""
EXPIRING = """
plan_rules:
  - id: hurry
    match: {}
    decision: require_approval
    expire_after: 1s
    on_expiry: cancel
"""


@pytest.fixture
def llm_root() -> Iterator[str]:
    with serve_on_loopback(ScriptedModel(PLAN, CALLS).fake()) as root:
        yield root


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    require_postgres()
    async with fresh_postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
async def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with database_url(str(request.param), tmp_path) as url:
        yield url


async def _migrate(config: Path, database: str) -> None:
    """PostgreSQL is migrated by the operator, not by the service (database.auto_migrate's default there)."""
    if database.startswith("postgresql"):
        await anyio.run_process([str(AGENT_RUNTIME), "migrate", "--config", str(config)], check=True)


def _config(tmp: Path, database_url: str, policy: str) -> tuple[Path, Path]:
    log = tmp / "calls.jsonl"
    path = tmp / "policy.yaml"
    path.write_text(policy)
    registry = write_registry(tmp, call_log=log)
    config = write_config(
        tmp,
        database_url=database_url,
        registry=registry,
        policy={"path": str(path), "expiry_check_seconds": 0.2},
    )
    return config, log


def _started(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [r for r in map(json.loads, log.read_text().splitlines()) if r["event"] == "start"]


async def test_a_call_gate_survives_kill_9_and_is_decided_on_the_restarted_service(
    tmp_path: Path, llm_root: str, any_db: str
) -> None:
    config, log = _config(tmp_path, any_db, GATE)
    await _migrate(config, any_db)
    first = ServiceProcess(config, llm_root=llm_root, log_path=tmp_path / "service-1.log").start()
    try:
        async with httpx.AsyncClient(base_url=first.url, timeout=30) as client:
            task_id = (await client.post("/v1/tasks", json={"prompt": "write"})).json()["id"]
            await read_stream(client, task_id, until="approval_required")
            assert (await client.post(f"/v1/tasks/{task_id}/approve", json={"plan_version": 1})).status_code == 202
            gated = await read_stream(client, task_id, until="call_approval_required")
    finally:
        first.kill9()
    call_id = gated[-1]["data"]["call_id"]

    second = ServiceProcess(config, llm_root=llm_root, log_path=tmp_path / "service-2.log").start()
    try:
        async with httpx.AsyncClient(base_url=second.url, timeout=30) as client:
            task = (await client.get(f"/v1/tasks/{task_id}")).json()
            assert task["status"] == "needs_attention" and task["gate"]["call_id"] == call_id
            inbox = (await client.get("/v1/approvals")).json()["items"]
            assert [(i["kind"], i["call"]["tool_call_id"]) for i in inbox] == [("call", call_id)]
            assert _started(log) == []  # still not sent
            decided = await client.post(f"/v1/tasks/{task_id}/calls/{call_id}/decision", json={"decision": "approve"})
            assert decided.status_code == 200, decided.text
            events = await read_stream(client, task_id, timeout=60)
    finally:
        second.stop()
    assert events[-1]["sse_event"] == "task_completed"
    assert [r["tool"] for r in _started(log)] == ["write_note"]


async def test_an_expiry_fires_once_across_two_replicas(tmp_path: Path, llm_root: str, pg_url: str) -> None:
    config, _log = _config(tmp_path, pg_url, EXPIRING)
    # PostgreSQL is migrated by the operator, not by the replicas (database.auto_migrate's default there).
    await anyio.run_process([str(AGENT_RUNTIME), "migrate", "--config", str(config)], check=True)
    replicas = [
        ServiceProcess(config, llm_root=llm_root, log_path=tmp_path / f"service-{i}.log").start() for i in (1, 2)
    ]
    try:
        async with httpx.AsyncClient(base_url=replicas[0].url, timeout=30) as client:
            ids = [(await client.post("/v1/tasks", json={"prompt": f"write {i}"})).json()["id"] for i in range(4)]
            streams = [await read_stream(client, task_id, timeout=60) for task_id in ids]
    finally:
        for replica in replicas:
            replica.stop()
    for events in streams:
        types = [e["sse_event"] for e in events]
        assert types.count("approval_expired") == 1, types
        assert types[-1] == "task_cancelled"
        expired = next(e for e in events if e["sse_event"] == "approval_expired")["data"]
        assert (expired["kind"], expired["action"], expired["rule"]) == ("plan", "cancel", "hurry")


async def test_a_call_gate_opened_on_one_replica_is_decided_through_another(
    tmp_path: Path, llm_root: str, pg_url: str
) -> None:
    config, log = _config(tmp_path, pg_url, GATE)
    await _migrate(config, pg_url)
    one, two = (
        ServiceProcess(config, llm_root=llm_root, log_path=tmp_path / f"service-{i}.log").start() for i in (1, 2)
    )
    try:
        async with (
            httpx.AsyncClient(base_url=one.url, timeout=30) as first,
            httpx.AsyncClient(base_url=two.url, timeout=30) as second,
        ):
            task_id = (await first.post("/v1/tasks", json={"prompt": "write"})).json()["id"]
            await read_stream(first, task_id, until="approval_required")
            assert (await first.post(f"/v1/tasks/{task_id}/approve", json={"plan_version": 1})).status_code == 202
            call_id = (await read_stream(first, task_id, until="call_approval_required"))[-1]["data"]["call_id"]
            inbox = (await second.get("/v1/approvals")).json()["items"]
            assert [(i["kind"], i["call"]["tool_call_id"]) for i in inbox] == [("call", call_id)]
            assert _started(log) == []
            decided = await second.post(f"/v1/tasks/{task_id}/calls/{call_id}/decision", json={"decision": "approve"})
            assert decided.status_code == 200, decided.text
            again = await first.post(f"/v1/tasks/{task_id}/calls/{call_id}/decision", json={"decision": "deny"})
            events = await read_stream(second, task_id, timeout=60)
    finally:
        one.stop()
        two.stop()
    assert again.status_code == 409  # used once, whichever replica is asked
    types = [e["sse_event"] for e in events]
    assert types.count("call_decided") == 1 and types[-1] == "task_completed", types
    assert [r["tool"] for r in _started(log)] == ["write_note"]
