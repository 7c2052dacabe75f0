"""Test harness: the real app served by uvicorn on 127.0.0.1, and a real SSE client.

``live_service`` runs the service in the test's event loop on a loopback socket (no subprocess),
so tests can reach ``runtime`` internals and still talk HTTP + SSE like any client.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import uvicorn
from httpx_sse import aconnect_sse

from agent_runtime.app import create_app
from agent_runtime.runtime import Overrides, Runtime
from agent_runtime.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
REGISTRY = REPO / "tool_registry.yaml"


EXAMPLE_SERVER = REPO / "examples" / "mcp_server" / "server.py"


def write_registry(tmp: Path, *, call_log: Path | None = None, extra: str = "") -> Path:
    """A registry with the example server; its call record goes to ``call_log`` (the server's own proof)."""
    env = f"\n      env: {{EXAMPLE_MCP_CALL_LOG: '{call_log}'}}" if call_log else ""
    path = tmp / "tool_registry.yaml"
    path.write_text(
        "servers:\n"
        "  - id: example\n"
        "    type: local_stdio\n"
        "    config:\n"
        "      command: ${PYTHON}\n"
        f"      args: ['{EXAMPLE_SERVER}']{env}\n" + extra
    )
    return path


def make_settings(tmp: Path, *, registry: Path | None = None, **sections: Any) -> Settings:
    """Settings for a test: SQLite in ``tmp``, the example tool server, fast leases, authentication
    disabled unless ``auth=...`` turns it on."""
    base: dict[str, Any] = {
        "database": {"url": f"sqlite+aiosqlite:///{tmp / 'db.sqlite'}"},
        "tools": {
            "registry_path": str(registry or REGISTRY),
            "workspace_root": str(tmp / "workspaces"),
            "connect_timeout_seconds": 30,
        },
        "runner": {"lease_seconds": 5, "heartbeat_seconds": 1, "safety_poll_seconds": 1},
        "server": {"shutdown_grace_seconds": 2, "sse_ping_seconds": 5},
        "llm": {"planner": {"provider": "offline"}, "executor": {"provider": "offline"}},
        # Explicitly off: most tests are about other things; tests/api/test_auth*.py turn it on
        # (``auth={"mode": "keys"}``) and make keys with ``tests.support.identity``.
        "auth": {"mode": "disabled"},
    }
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value}
    config = tmp / "config.yaml"
    config.write_text("{}\n")
    return load_settings(config, **base)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Live:
    url: str
    runtime: Runtime
    client: httpx.AsyncClient
    app: Any = None
    """The ASGI app being served (e.g. to serve it a second time behind a test proxy)."""

    async def submit(self, prompt: str, **extra: Any) -> dict[str, Any]:
        response = await self.client.post("/v1/tasks", json={"prompt": prompt, **extra})
        assert response.status_code == 202, response.text
        body: dict[str, Any] = response.json()
        return body

    async def task(self, task_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/v1/tasks/{task_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def approve(self, task_id: str, version: int) -> httpx.Response:
        return await self.client.post(f"/v1/tasks/{task_id}/approve", json={"plan_version": version})

    async def wait_for(self, task_id: str, event_type: str, timeout: float = 30) -> list[dict[str, Any]]:
        """Read the task's SSE stream from the start until ``event_type``; return the events seen."""
        return await read_stream(self.client, task_id, until=event_type, timeout=timeout)


async def read_stream(
    client: httpx.AsyncClient,
    task_id: str,
    *,
    until: str | None = None,
    after: int | None = None,
    last_event_id: int | None = None,
    timeout: float = 30,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Consume SSE events (with ``id`` and ``event`` fields added) until ``until``, the stream's end, or ``limit``."""
    seen: list[dict[str, Any]] = []
    headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
    params = {"after": after} if after is not None else {}
    with anyio.fail_after(timeout):
        async with aconnect_sse(client, "GET", f"/v1/tasks/{task_id}/stream", headers=headers, params=params) as source:
            assert source.response.status_code == 200, await source.response.aread()
            async for sse in source.aiter_sse():
                if not sse.data:
                    continue  # keep-alive ping (an SSE comment)
                payload = json.loads(sse.data)
                payload["sse_id"] = int(sse.id)
                payload["sse_event"] = sse.event
                seen.append(payload)
                if sse.event == until or (limit is not None and len(seen) >= limit):
                    break
    return seen


class _Server(uvicorn.Server):
    """uvicorn's server with an event set once it listens (after the app's lifespan started)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = anyio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


@asynccontextmanager
async def live_service(
    settings: Settings, overrides: Overrides | None = None, *, wait_for_tools: bool = True
) -> AsyncIterator[Live]:
    """Serve the real app on a loopback port for the duration of the block; with ``wait_for_tools``
    (the default) only once no tool server is pending (serving itself does not wait for discovery)."""
    app = create_app(settings, overrides)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_config=None, lifespan="on", timeout_graceful_shutdown=5)
    server = _Server(config)
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        with anyio.fail_after(60):
            await server.ready.wait()
            if wait_for_tools:
                await app.state.runtime.catalog.wait_settled()
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            try:
                yield Live(url=url, runtime=app.state.runtime, client=client, app=app)
            finally:
                server.should_exit = True
    sock.close()
