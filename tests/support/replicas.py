"""Several service processes sharing one PostgreSQL database, and a client that follows a task's
events across them, reconnecting to another replica with ``Last-Event-ID`` when one goes away."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import httpx
from httpx_sse import aconnect_sse

from agent_runtime.services.pg_listener import asyncpg_dsn
from tests.support.process import ServiceProcess

TERMINAL = {"task_completed", "task_failed", "task_cancelled", "task_rejected"}


class Cluster:
    def __init__(
        self,
        config: Path,
        llm_root: str,
        tmp: Path,
        size: int,
        *,
        headers: dict[str, str] | None = None,
        submit_headers: dict[str, str] | None = None,
    ) -> None:
        self.headers = headers or {}
        """Sent on every request (an approver's key when authentication is on)."""
        self.submit_headers = submit_headers or self.headers
        """Sent with submissions (a submitter's key: the approver may not approve its own tasks)."""
        self.replicas = [
            ServiceProcess(config, llm_root=llm_root, log_path=tmp / f"replica-{i}.log") for i in range(size)
        ]

    def start(self) -> Cluster:
        for replica in self.replicas:
            replica.start()
        return self

    def stop(self) -> None:
        for replica in self.replicas:
            replica.stop()

    def live(self) -> list[ServiceProcess]:
        return [r for r in self.replicas if r.proc is not None and r.proc.poll() is None]

    def by_pid(self, pid: int) -> ServiceProcess:
        return next(r for r in self.replicas if r.pid == pid)


async def lease_owner_pid(database_url: str, task_id: str) -> int | None:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        owner = await conn.fetchval("SELECT lease_owner FROM tasks WHERE id = $1", task_id)
    finally:
        await conn.close()
    return int(owner.split(":")[1]) if owner else None


async def follow(
    cluster: Cluster,
    task_id: str,
    *,
    until: Callable[[dict[str, Any]], bool] = lambda e: e["sse_event"] in TERMINAL,
    after: int = 0,
    timeout: float = 120,
    start_at: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """Read events after ``after`` until ``until`` matches, hopping replicas on disconnects.

    Returns the events and how many times the client had to reconnect.
    """
    seen: list[dict[str, Any]] = []
    last = after
    hops = 0
    turn = start_at
    with anyio.fail_after(timeout):
        while True:
            live = cluster.live()
            replica = live[turn % len(live)]
            turn += 1
            try:
                async with (
                    httpx.AsyncClient(
                        base_url=replica.url, timeout=httpx.Timeout(30, read=60), headers=cluster.headers
                    ) as client,
                    aconnect_sse(
                        client, "GET", f"/v1/tasks/{task_id}/stream", headers={"Last-Event-ID": str(last)}
                    ) as source,
                ):
                    if source.response.status_code != 200:
                        raise httpx.TransportError(f"status {source.response.status_code}")
                    async for sse in source.aiter_sse():
                        if not sse.data:
                            continue
                        event = json.loads(sse.data)
                        event["sse_id"] = int(sse.id)
                        event["sse_event"] = sse.event
                        event["replica"] = replica.port
                        seen.append(event)
                        last = event["sse_id"]
                        if until(event):
                            return seen, hops
            except (httpx.TransportError, httpx.StreamError):
                pass
            hops += 1  # the stream ended early (replica died or drained): reconnect elsewhere
            await anyio.lowlevel.checkpoint()
