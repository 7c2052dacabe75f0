"""An MCP stdio transport to a child forked by a fork server, instead of a spawned process.

The service makes the child's stdin and stdout pipes (and opens its stderr log), hands the child's
ends to the fork server and keeps its own: newline-delimited JSON-RPC both ways, as with a spawned
stdio server. Shutdown follows the MCP SDK's stdio sequence: close stdin, give the child two seconds
to exit, then SIGTERM its process group, two more seconds, then SIGKILL.
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import IO

import anyio
import mcp_types
import structlog
from mcp.client._transport import TransportStreams
from mcp.shared.message import SessionMessage

from agent_runtime.tools.forkserver import ForkServer

log = structlog.get_logger(__name__)

EXIT_GRACE_SECONDS = 2.0
KILL_GRACE_SECONDS = 2.0


class ForkedChild:
    """The pid of a forked instance and the fork server that reaps it."""

    def __init__(self, server: ForkServer, pid: int) -> None:
        self.server = server
        self.pid = pid

    def running(self) -> bool:
        return self.server.returncode(self.pid) is None and self.server.alive()


@asynccontextmanager
async def forked_stdio(
    server: ForkServer, argv: tuple[str, ...], env: Mapping[str, str], cwd: Path, errlog: IO[str]
) -> AsyncIterator[tuple[TransportStreams, ForkedChild]]:
    """Fork an instance and yield the MCP streams to it; stop it when the block ends."""
    stdin_r, stdin_w = os.pipe()
    stdout_r, stdout_w = os.pipe()
    try:
        pid = await server.spawn(argv, env, cwd, (stdin_r, stdout_w, errlog.fileno()))
    except BaseException:
        for fd in (stdin_r, stdin_w, stdout_r, stdout_w):
            os.close(fd)
        raise
    os.close(stdin_r)
    os.close(stdout_w)
    os.set_blocking(stdin_w, False)
    os.set_blocking(stdout_r, False)
    child = ForkedChild(server, pid)
    read_writer, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_stream, write_reader = anyio.create_memory_object_stream[SessionMessage](0)
    stdin_open = True

    async def close_stdin() -> None:
        nonlocal stdin_open
        if stdin_open:
            stdin_open = False
            anyio.notify_closing(stdin_w)
            os.close(stdin_w)

    async def reader() -> None:
        buffer = b""
        async with read_writer:
            while True:
                try:
                    chunk = os.read(stdout_r, 1 << 16)
                except BlockingIOError:
                    await anyio.wait_readable(stdout_r)
                    continue
                except OSError:
                    return
                if not chunk:
                    return
                *lines, buffer = (buffer + chunk).split(b"\n")
                for line in lines:
                    try:
                        await read_writer.send(_parse(line))
                    except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                        return

    async def writer() -> None:
        try:
            async with write_reader:
                async for message in write_reader:
                    data = (message.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n").encode()
                    while data:
                        try:
                            data = data[os.write(stdin_w, data) :]
                        except BlockingIOError:
                            await anyio.wait_writable(stdin_w)
        except (OSError, anyio.ClosedResourceError, anyio.BrokenResourceError):
            await read_writer.aclose()  # the child is gone: end the session instead of hanging

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader)
        tg.start_soon(writer)
        try:
            yield (read_stream, write_stream), child
        finally:
            with anyio.CancelScope(shield=True):
                await read_stream.aclose()
                await write_stream.aclose()
                await close_stdin()
                await _stop(child)
            tg.cancel_scope.cancel()
    anyio.notify_closing(stdout_r)
    os.close(stdout_r)
    server.forget(pid)


async def _stop(child: ForkedChild) -> None:
    with anyio.move_on_after(EXIT_GRACE_SECONDS):
        await child.server.wait_exit(child.pid)
    for signum, grace in ((signal.SIGTERM, KILL_GRACE_SECONDS), (signal.SIGKILL, KILL_GRACE_SECONDS)):
        if not child.running():
            return
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signum)
        with anyio.move_on_after(grace):
            await child.server.wait_exit(child.pid)
    if child.running():
        log.warning("forked_tool_server_survived_kill", pid=child.pid)


def _parse(line: bytes) -> SessionMessage | Exception:
    try:
        return SessionMessage(mcp_types.jsonrpc_message_adapter.validate_json(line, by_name=False))
    except ValueError as exc:
        log.warning("tool_server_sent_invalid_json", error=str(exc)[:200])
        return exc
