"""One live MCP server connection, opened and closed by a single owner task.

The MCP client must be entered and exited in the same task (anyio cancel scopes), so every
connection gets an owner task: it enters ``mcp.Client`` (stdio subprocess or streamable HTTP, always
``mode="legacy"`` so a hung server fails within *our* connect timeout), lists the tools, signals
ready, waits for the stop event and exits. Any other task may call tools on the open client.

Failures are translated at this edge: a call that outlives its timeout raises
:class:`ToolTimeoutError`; a server that cannot start, exits or dies raises :class:`ToolServerError`
with the server id and the tail of its stderr; an ``isError`` result is data (``ToolResult``).
Every stderr tail and error text made here has the values the registry injected into this server
redacted (``LaunchSpec.redact``), so service logs, the catalogue's status, task errors and events,
which all take their text from here, never show them.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any, Literal, TextIO, cast
from urllib.parse import urlsplit

import anyio
import httpx2
import mcp_types
import psutil
import structlog
from mcp import Client, MCPError, StdioServerParameters
from mcp.client._transport import TransportStreams
from mcp.client.stdio import get_default_environment, stdio_client
from mcp.client.streamable_http import streamable_http_client

from agent_runtime.errors import ToolServerError, ToolTimeoutError
from agent_runtime.tools import processes
from agent_runtime.tools.base import ToolInfo, ToolResult
from agent_runtime.tools.convert import protocol_error_result, tool_info, tool_result
from agent_runtime.tools.fork_transport import ForkedChild, forked_stdio
from agent_runtime.tools.forkserver import ForkServer
from agent_runtime.tools.registry import LaunchSpec

log = structlog.get_logger(__name__)

ProgressCallback = Callable[[float, float | None, str | None], Awaitable[None]]
State = Literal["starting", "ready", "failed", "closed"]

CLIENT_INFO = mcp_types.Implementation(name="agent-runtime", version="0.1.0")
STOP_TIMEOUT = 10.0
"""Bound on a graceful stop; the SDK itself needs at most ~4.5 s (stdin close, SIGTERM, SIGKILL)."""
_MODEL_ERRORS = {mcp_types.INVALID_PARAMS, mcp_types.METHOD_NOT_FOUND}


def describe_exception(exc: BaseException) -> str:
    """One line for an exception, unwrapping the exception groups anyio and the SDK produce."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class ServerConnection:
    """One running instance of one server. ``start()``, then ``call_tool()``, then ``aclose()``."""

    def __init__(
        self,
        spec: LaunchSpec,
        *,
        stderr_path: Path | None = None,
        fork: tuple[ForkServer, tuple[str, ...]] | None = None,
    ) -> None:
        """``fork``: the fork server that starts this stdio instance and the instance's ``sys.argv``
        (else the command is spawned)."""
        self.spec = spec
        self._fork = fork
        self._child: ForkedChild | None = None
        self.state: State = "starting"
        self.error: str | None = None
        self.tools: list[ToolInfo] = []
        self._stderr_path = stderr_path
        self._stderr: IO[str] | None = None
        self._final_tail = ""
        self._marker = uuid.uuid4().hex
        self._process: psutil.Process | None = None
        self._client: Client | None = None
        self._scope: anyio.CancelScope | None = None
        self._settled = anyio.Event()
        self._stop = anyio.Event()
        self._done = anyio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def server_id(self) -> str:
        return self.spec.server_id

    @property
    def pid(self) -> int | None:
        if self._child is not None:
            return self._child.pid
        return self._process.pid if self._process is not None else None

    @property
    def forked(self) -> bool:
        """Started by a fork server (not spawned)."""
        return self._child is not None

    def stderr_tail(self) -> str:
        return self.spec.redact(processes.read_tail(self._stderr) or self._final_tail)

    def alive(self) -> bool:
        """Ready and, for stdio, its process still running (a dead one is marked failed and stopped)."""
        if self.state != "ready":
            return False
        if self._child is not None and not self._child.running():
            self._mark_dead("exited (its process is gone)")
            return False
        if self._process is not None and not processes.is_running(self._process):
            self._mark_dead("exited (its process is gone)")
            return False
        return True

    def _process_running(self) -> bool:
        if self._child is not None:
            return self._child.running()
        return self._process is None or processes.is_running(self._process)

    def failure_text(self, what: str) -> str:
        text = f"tool server {self.server_id!r} {what}"
        if self.spec.transport == "remote_http":
            return f"{text} ({_public_url(self.spec.url)})"
        tail = self.stderr_tail()
        return f"{text}; stderr tail:\n{tail}" if tail else f"{text} (no stderr output)"

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the owner task and wait until connected; raise ToolServerError on failure/timeout."""
        if self._task is not None:
            raise RuntimeError("a ServerConnection can be started only once")
        self._task = asyncio.get_running_loop().create_task(self._owner(), name=f"mcp-owner:{self.server_id}")
        with anyio.move_on_after(self.spec.connect_timeout):
            await self._settled.wait()
        if not self._settled.is_set():
            self._fail(f"did not finish connecting within {self.spec.connect_timeout:g} s")
            self._request_stop()
        if self.state != "ready":
            raise ToolServerError(self.error or "failed", details={"server_id": self.server_id})

    async def aclose(self) -> None:
        """Stop the server and wait for it (bounded, shielded); kill leftover processes."""
        forked = self._fork is not None
        if self._process is None and self._task is not None and self.spec.transport == "local_stdio" and not forked:
            self._process = processes.find_leader(self._marker)  # never connected: find it to be sure
        self._request_stop()
        with anyio.CancelScope(shield=True):
            if self._task is not None:
                with anyio.move_on_after(STOP_TIMEOUT):
                    await self._done.wait()
            if self._process is not None:
                await anyio.to_thread.run_sync(processes.kill_leftovers, self._process.pid, self._marker)
            elif self._child is not None and self._fork is not None:
                markers = (self._marker, self._fork[0].marker)
                await anyio.to_thread.run_sync(processes.kill_leftovers, self._child.pid, markers)
        if self.state == "ready":
            self.state = "closed"

    async def wait_stopped(self) -> None:
        """Wait until the connection's owner task has ended (stopped, failed or found dead)."""
        await self._done.wait()

    def _request_stop(self) -> None:
        self._stop.set()
        if self._scope is not None and not self._settled.is_set():
            self._scope.cancel()  # still connecting: abandon the handshake

    def _fail(self, what: str) -> None:
        if self.error is None:
            self.error = self.spec.redact(self.failure_text(what))
        self.state = "failed"
        self._settled.set()

    def _mark_dead(self, why: str) -> None:
        if self.state == "ready":
            self._fail(why)
            self._request_stop()

    async def _owner(self) -> None:
        try:
            with anyio.CancelScope() as scope:
                self._scope = scope
                scope.deadline = anyio.current_time() + self.spec.connect_timeout
                async with self._open() as client:
                    listed = await self._list_tools(client)
                    scope.deadline = math.inf
                    overrides = self.spec.tool_overrides
                    self.tools = [tool_info(self.server_id, t, overrides) for t in listed]
                    self._client = client
                    if self.spec.transport == "local_stdio" and self._fork is None:
                        self._process = processes.find_leader(self._marker)
                    self.state = "ready"
                    self._settled.set()
                    await self._stop.wait()
            if scope.cancelled_caught and not self._stop.is_set():
                self._fail(f"did not finish connecting within {self.spec.connect_timeout:g} s")
        except OSError as exc:  # missing executable, bad cwd: expected, no traceback needed
            self._fail(f"could not be started: {describe_exception(exc)}")
            log.warning(
                "tool_server_start_failed", server=self.server_id, error=self.spec.redact(describe_exception(exc))
            )
        except Exception as exc:  # top level of the owner task: record, never propagate
            if self.state == "ready":
                self._fail(f"closed unexpectedly: {describe_exception(exc)}")
            else:
                self._fail(f"failed to connect: {describe_exception(exc)}")
            log.exception("tool_server_failed", server=self.server_id)
        finally:
            self._client = None
            if self.state == "starting":
                self._fail("was stopped before it finished connecting")
            elif self.state == "ready":
                self.state = "closed"
            self._final_tail = processes.read_tail(self._stderr)
            if self._stderr is not None:
                self._stderr.close()
            self._settled.set()
            self._done.set()

    @asynccontextmanager
    async def _open(self) -> AsyncIterator[Client]:
        spec = self.spec
        if spec.transport == "remote_http":
            timeout = httpx2.Timeout(spec.connect_timeout, read=max(300.0, spec.call_timeout))
            async with httpx2.AsyncClient(headers=dict(spec.headers), timeout=timeout) as http:
                transport = streamable_http_client(spec.url, http_client=http)
                async with Client(transport, mode="legacy", cache=None, client_info=CLIENT_INFO) as client:
                    yield client
            return
        self._stderr = _open_stderr(self._stderr_path)
        if self._fork is not None:
            server, argv = self._fork
            env = {**get_default_environment(), **spec.env, processes.MARKER_ENV: self._marker}
            cwd = spec.cwd if spec.cwd is not None else Path.cwd()
            async with forked_stdio(server, argv, env, cwd, self._stderr) as (streams, child):
                self._child = child
                async with Client(_Given(streams), mode="legacy", cache=None, client_info=CLIENT_INFO) as client:
                    yield client
            return
        params = StdioServerParameters(
            command=spec.command,
            args=list(spec.args),
            env={**spec.env, processes.MARKER_ENV: self._marker},
            cwd=spec.cwd,
        )
        transport = stdio_client(params, errlog=cast(TextIO, self._stderr))
        async with Client(transport, mode="legacy", cache=None, client_info=CLIENT_INFO) as client:
            yield client

    @staticmethod
    async def _list_tools(client: Client) -> list[mcp_types.Tool]:
        tools: list[mcp_types.Tool] = []
        cursor: str | None = None
        for _ in range(100):  # a paginator that never ends cannot hang the start
            page = await client.list_tools(cursor=cursor)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if cursor is None:
                break
        return tools

    # --- calls -----------------------------------------------------------------------------

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any] | None,
        *,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
        meta: dict[str, Any] | None = None,
    ) -> ToolResult:
        """Call one tool. ``isError`` and argument errors come back as ``ToolResult(is_error=True)``.
        ``meta`` goes to the server as the request's ``_meta``."""
        client = self._client
        if client is None or not self.alive():
            raise ToolServerError(
                self.error or self.failure_text("is not running"), details={"server_id": self.server_id}
            )
        limit = timeout if timeout is not None else self.spec.call_timeout
        details = {"server_id": self.server_id, "tool": name, "timeout_seconds": limit}
        progress = _SafeProgress(on_progress) if on_progress is not None else None
        try:
            # The SDK's read timeout cancels the call on the server; the outer one is a backstop.
            with anyio.fail_after(limit + 5.0):
                result = await client.call_tool(
                    name,
                    arguments or {},
                    read_timeout_seconds=limit,
                    progress_callback=progress,
                    meta=cast(Any, meta),
                )
        except MCPError as exc:
            message = self.spec.redact(exc.message)
            if exc.code == mcp_types.REQUEST_TIMEOUT:
                raise ToolTimeoutError(
                    f"tool {self.server_id}.{name} did not answer within {limit:g} s", details=details
                ) from exc
            if exc.code in _MODEL_ERRORS:
                return protocol_error_result(self.server_id, name, exc.code, message)
            if exc.code == mcp_types.CONNECTION_CLOSED:
                gone = not self._process_running()
                self._mark_dead(f"{'exited' if gone else 'closed the connection'} during a call to {name!r}")
                raise ToolServerError(self.error or message, details=details) from exc
            raise ToolServerError(
                f"tool server {self.server_id!r} answered {name!r} with protocol error {exc.code}: {message}",
                details=details,
            ) from exc
        except TimeoutError as exc:
            raise ToolTimeoutError(
                f"tool {self.server_id}.{name} did not answer within {limit:g} s", details=details
            ) from exc
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream) as exc:
            self._mark_dead(f"lost its connection during a call to {name!r}")
            raise ToolServerError(self.error or "connection lost", details=details) from exc
        return tool_result(self.server_id, name, result)


class _Given:
    """A transport made of streams that are already open (the forked child's)."""

    def __init__(self, streams: TransportStreams) -> None:
        self._streams = streams

    async def __aenter__(self) -> TransportStreams:
        return self._streams

    async def __aexit__(self, *exc: object) -> None:
        return None


def _public_url(url: str) -> str:
    """The URL without credentials or query (either may hold a secret), for error messages."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"


def _open_stderr(path: Path | None) -> IO[str]:
    if path is None:
        return tempfile.TemporaryFile(mode="w+", encoding="utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("a+", encoding="utf-8")


class _SafeProgress:
    """Forwards MCP progress notifications; a failing listener is logged, not fatal to the call."""

    def __init__(self, callback: ProgressCallback) -> None:
        self._callback = callback

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        try:
            await self._callback(progress, total, message)
        except Exception:  # a callback boundary: a broken listener must not break the tool call
            log.exception("tool_progress_callback_failed")


@contextlib.asynccontextmanager
async def connected(spec: LaunchSpec, *, stderr_path: Path | None = None) -> AsyncIterator[ServerConnection]:
    """Start a connection for the duration of a block (closing it even if the start failed)."""
    conn = ServerConnection(spec, stderr_path=stderr_path)
    try:
        await conn.start()
        yield conn
    finally:
        await conn.aclose()
