"""A webhook receiver for tests: a tiny ASGI app served by uvicorn on 127.0.0.1.

It records every request (headers, raw body, the status it answered) and answers the status its
``answers`` script gives for each attempt (default 200). ``receiver(port=...)`` can start it on a
port chosen earlier, so a test can point an endpoint at a receiver that is not up yet.
"""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import uvicorn

from tests.support.harness import free_port

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


@dataclass
class Request:
    headers: dict[str, str]
    body: bytes
    status: int
    at: float
    """``time.monotonic()`` when it arrived."""


@dataclass
class Receiver:
    answers: Callable[[int], int] = lambda _n: 200
    """The status to answer the n-th request (0-based)."""
    requests: list[Request] = field(default_factory=list)
    hold: anyio.Event | None = None
    """When given, each request is recorded at once but answered only after this event is set."""
    _changed: anyio.Event = field(default_factory=anyio.Event)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        status = self.answers(len(self.requests))
        self.requests.append(Request(headers, body, status, time.monotonic()))
        if self.hold is not None:
            self._changed.set()
            self._changed = anyio.Event()
            await self.hold.wait()
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"" if status == 204 else b"ok" if status < 300 else b"no"})
        self._changed.set()
        self._changed = anyio.Event()

    def delivered(self) -> list[Request]:
        return [r for r in self.requests if 200 <= r.status < 300]

    async def wait_for(self, check: Callable[[Receiver], bool], timeout: float = 30) -> None:
        """Wait until ``check(self)`` holds (re-checked on every request), at most ``timeout`` seconds."""
        with anyio.fail_after(timeout):
            while not check(self):
                await self._changed.wait()


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = anyio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


@asynccontextmanager
async def serve_receiver(receiver: Receiver, port: int | None = None) -> AsyncIterator[str]:
    """Serve ``receiver`` on 127.0.0.1 (``port``, or a free one); yield its URL."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port or 0))
    bound = sock.getsockname()[1]
    server = _Server(uvicorn.Config(receiver, log_config=None, lifespan="on", timeout_graceful_shutdown=2))
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            with anyio.fail_after(30):
                await server.ready.wait()
            try:
                yield f"http://127.0.0.1:{bound}/hooks"
            finally:
                server.should_exit = True
    finally:
        sock.close()


def unused_port() -> int:
    return free_port()
