"""The service's side of one fork server (``fork_parent.py``), and the set of them per service.

A :class:`ForkServer` is one long-lived process per (interpreter, entry point, static environment)
that has imported the server's modules. :meth:`ForkServer.spawn` hands it the child's stdio
descriptors over a ``SOCK_SEQPACKET`` control socket and gets the new child's pid back; the fork
server later reports the child's exit. :class:`ForkServers` starts fork servers on first use, and
remembers an entry point that cannot be forked (no recognised entry point, threads at import, an
interpreter without fork) so those servers are spawned as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import structlog

from agent_runtime.tools import processes
from agent_runtime.tools.entrypoints import EntryPoint

log = structlog.get_logger(__name__)

PARENT_SCRIPT = Path(__file__).with_name("fork_parent.py")
FORK_SERVER_ENV = "AGENT_RUNTIME_FORK_SERVER"
"""Set (to ``1``) in a fork server's environment, and so in the start-up environment its children
inherit in ``/proc``: how tests and operators tell a fork server from an instance."""
STOP_TIMEOUT = 5.0


class ForkUnavailableError(Exception):
    """This entry point cannot be served by a fork server; spawn its instances instead."""


class ForkServer:
    """One running fork server; use :meth:`start`, then :meth:`spawn`, then :meth:`aclose`."""

    def __init__(self, entry: EntryPoint, env: Mapping[str, str], stderr_path: Path) -> None:
        self.entry = entry
        self.marker = os.urandom(16).hex()
        self.env = {**env, processes.MARKER_ENV: self.marker, FORK_SERVER_ENV: "1"}
        self.pid: int | None = None
        self.python = ""
        self.spawned = 0
        self._stderr_path = stderr_path
        self._process: asyncio.subprocess.Process | None = None
        self._sock: socket.socket | None = None
        self._ids = itertools.count(1)
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._exits: dict[int, int | None] = {}
        self._exit_events: dict[int, anyio.Event] = {}
        self._ready: asyncio.Future[dict[str, Any]] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._send_lock = anyio.Lock()

    def alive(self) -> bool:
        return self._process is not None and self._process.returncode is None and self._sock is not None

    async def start(self, timeout: float) -> None:
        """Start the process and wait until it has imported the entry point; ForkUnavailableError if not."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        spec = {**self.entry.spec(), "control_fd": theirs.fileno()}
        self._stderr_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._stderr_path.open("ab") as stderr:
                self._process = await asyncio.create_subprocess_exec(
                    self.entry.interpreter,
                    str(PARENT_SCRIPT),
                    json.dumps(spec),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                    env=self.env,
                    cwd="/",
                    pass_fds=(theirs.fileno(),),
                    start_new_session=True,
                )
        except OSError as exc:
            ours.close()
            raise ForkUnavailableError(f"cannot start the fork server: {exc}") from exc
        finally:
            theirs.close()
        ours.setblocking(False)
        self._sock = ours
        self.pid = self._process.pid
        self._ready = asyncio.get_running_loop().create_future()
        self._reader = asyncio.get_running_loop().create_task(self._read_forever(), name="fork-server-reader")
        try:
            with anyio.fail_after(timeout):
                ready = await self._ready
        except TimeoutError:
            await self.aclose()
            raise ForkUnavailableError(f"the fork server did not import the server within {timeout:g} s") from None
        except BaseException:  # cancelled while it started (e.g. at shutdown): close the socket and the process
            with anyio.CancelScope(shield=True):
                await self.aclose()
            raise
        if not ready.get("ok"):
            await self.aclose()
            raise ForkUnavailableError(str(ready.get("error") or "the fork server stopped before it was ready"))
        self.python = str(ready.get("python", ""))

    async def spawn(self, argv: tuple[str, ...], env: Mapping[str, str], cwd: Path, fds: tuple[int, int, int]) -> int:
        """Fork a child that runs the entry point with ``fds`` as its stdin, stdout and stderr."""
        sock = self._sock
        if sock is None or not self.alive():
            raise OSError("the fork server is not running")
        request_id = next(self._ids)
        reply: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[request_id] = reply
        data = json.dumps({"op": "spawn", "id": request_id, "argv": argv, "env": dict(env), "cwd": str(cwd)})
        try:
            async with self._send_lock:
                while True:
                    try:
                        socket.send_fds(sock, [data.encode("utf-8")], list(fds))
                        break
                    except BlockingIOError:
                        await anyio.wait_writable(sock)
            answer = await reply
        finally:
            self._replies.pop(request_id, None)
        if "error" in answer:
            raise OSError(f"the fork server could not fork: {answer['error']}")
        pid = int(answer["pid"])
        self.spawned += 1
        if pid not in self._exit_events:
            self._exit_events[pid] = anyio.Event()
        return pid

    def returncode(self, pid: int) -> int | None:
        """The child's exit status once the fork server has reaped it, else None."""
        return self._exits.get(pid)

    async def wait_exit(self, pid: int) -> None:
        """Wait until child ``pid`` has exited (or the fork server is gone)."""
        event = self._exit_events.get(pid)
        if event is not None:
            await event.wait()

    def forget(self, pid: int) -> None:
        self._exits.pop(pid, None)
        self._exit_events.pop(pid, None)

    async def aclose(self) -> None:
        """Close the control socket: the fork server stops its children and exits; bounded."""
        sock, self._sock = self._sock, None
        if sock is not None:
            anyio.notify_closing(sock)
            sock.close()
        process = self._process
        with anyio.CancelScope(shield=True):
            if process is not None and process.returncode is None:
                with anyio.move_on_after(STOP_TIMEOUT):
                    await process.wait()
                if process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    await process.wait()
            if self._reader is not None:
                self._reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._reader
        self._release_waiters()

    async def _read_forever(self) -> None:
        sock = self._sock
        assert sock is not None
        try:
            while True:
                try:
                    data = sock.recv(1 << 16)
                except BlockingIOError:
                    await anyio.wait_readable(sock)
                    continue
                if not data:
                    break
                self._dispatch(json.loads(data))
        except (OSError, anyio.ClosedResourceError):
            pass  # the socket was closed by aclose()
        finally:
            self._release_waiters()

    def _dispatch(self, message: dict[str, Any]) -> None:
        op = message.get("op")
        if op == "ready" and self._ready is not None and not self._ready.done():
            self._ready.set_result(message)
        elif op == "spawned":
            reply = self._replies.get(int(message["id"]))
            if reply is not None and not reply.done():
                reply.set_result(message)
        elif op == "exited":
            pid = int(message["pid"])
            self._exits[pid] = int(message["status"])
            self._exit_events.setdefault(pid, anyio.Event()).set()

    def _release_waiters(self) -> None:
        """The fork server is gone: nobody will answer, and its children are stopped by it."""
        if self._ready is not None and not self._ready.done():
            self._ready.set_result({"ok": False, "error": "the fork server exited during start-up"})
        for reply in self._replies.values():
            if not reply.done():
                reply.set_result({"error": "the fork server exited"})
        for event in self._exit_events.values():
            event.set()


class ForkServers:
    """The fork servers of one service, started on first use and kept until :meth:`aclose`."""

    def __init__(self, log_dir: Path, start_timeout: float = 30.0) -> None:
        self._log_dir = log_dir
        self._start_timeout = start_timeout
        self._servers: dict[tuple[EntryPoint, tuple[tuple[str, str], ...]], ForkServer] = {}
        self._unavailable: dict[tuple[EntryPoint, tuple[tuple[str, str], ...]], str] = {}
        self._locks: dict[tuple[EntryPoint, tuple[tuple[str, str], ...]], anyio.Lock] = {}
        self._closed = False

    async def get(self, entry: EntryPoint, env: Mapping[str, str]) -> ForkServer | None:
        """The running fork server for ``entry`` with start-up environment ``env``, started if
        needed; None if it cannot be forked (the reason is logged once and shown in status)."""
        key = (entry, tuple(sorted(env.items())))
        if self._closed or key in self._unavailable:
            return None
        server = self._servers.get(key)
        if server is not None and server.alive():
            return server
        async with self._locks.setdefault(key, anyio.Lock()):
            server = self._servers.get(key)
            if server is not None and server.alive():
                return server
            if server is not None:  # it died: start a fresh one
                log.warning("fork_server_died", interpreter=entry.interpreter, entry_point=entry.target)
                await server.aclose()
            name = f"forkserver-{os.getpid()}-{time.monotonic_ns()}.stderr.log"
            server = ForkServer(entry, env, self._log_dir / name)
            try:
                await server.start(self._start_timeout)
            except ForkUnavailableError as exc:
                self._unavailable[key] = str(exc)
                self._servers.pop(key, None)
                log.warning("fork_server_unavailable", entry_point=entry.target, reason=str(exc))
                return None
            if self._closed:
                await server.aclose()
                return None
            self._servers[key] = server
            log.info("fork_server_started", entry_point=entry.target, pid=server.pid, python=server.python)
            return server

    def reopen(self) -> None:
        self._closed = False

    def status(self) -> list[dict[str, Any]]:
        running = [
            {"entry_point": s.entry.target, "interpreter": s.entry.interpreter, "pid": s.pid, "forked": s.spawned}
            for s in self._servers.values()
        ]
        refused = [{"entry_point": key[0].target, "unavailable": why} for key, why in self._unavailable.items()]
        return running + refused

    async def aclose(self) -> None:
        self._closed = True
        servers, self._servers = list(self._servers.values()), {}
        async with anyio.create_task_group() as tg:
            for server in servers:
                tg.start_soon(server.aclose)
