"""Server process bookkeeping: find a stdio server's process, kill leftovers, read its stderr tail.

The MCP SDK starts every stdio server in its own session (so its own process group) and kills that
group on close. It does not tell us the pid, so each instance is given a unique marker variable in
its environment; we find the group leader among our children by that marker, and after the SDK's
teardown we SIGKILL any member of the group that is still alive (the last resort against orphans).
A server that daemonizes into a new session escapes by design; none of ours do.
"""

from __future__ import annotations

import contextlib
import os
import signal
from typing import IO

import psutil
import structlog

log = structlog.get_logger(__name__)

MARKER_ENV = "AGENT_RUNTIME_TOOL_INSTANCE"
TAIL_BYTES = 4096
TAIL_LINES = 20


def _has_marker(proc: psutil.Process, marker: str | tuple[str, ...]) -> bool:
    markers = (marker,) if isinstance(marker, str) else marker
    try:
        return proc.environ().get(MARKER_ENV) in markers
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def find_leader(marker: str) -> psutil.Process | None:
    """The direct child of this process that carries ``marker`` (the server's group leader)."""
    try:
        children = psutil.Process().children(recursive=False)
    except psutil.Error:
        log.exception("tool_server_children_unlisted")
        return None
    return next((child for child in children if _has_marker(child, marker)), None)


def is_running(proc: psutil.Process | None) -> bool:
    """True if the process exists (same pid *and* start time) and is not a zombie."""
    if proc is None:
        return False
    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_members(pgid: int, marker: str | tuple[str, ...]) -> list[psutil.Process]:
    """Live processes of group ``pgid`` that carry ``marker`` (or one of several), so a reused pgid is
    never touched. A forked instance shows its fork server's marker (``/proc/<pid>/environ`` is the
    environment a process was *started* with), and what it starts shows its own."""
    if not _group_alive(pgid):
        return []
    members = []
    for proc in psutil.process_iter():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getpgid(proc.pid) == pgid and _has_marker(proc, marker):
                members.append(proc)
    return members


def kill_leftovers(pgid: int, marker: str | tuple[str, ...]) -> int:
    """SIGKILL what is left of the server's process group; return how many processes were killed."""
    members = group_members(pgid, marker)
    for proc in members:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            proc.send_signal(signal.SIGKILL)
    if members:
        log.warning("tool_server_leftovers_killed", processes=len(members), pgid=pgid)
        with contextlib.suppress(psutil.Error):
            psutil.wait_procs(members, timeout=2.0)
    return len(members)


def kill_process(proc: psutil.Process | None) -> None:
    """SIGKILL one process (tests use this to simulate a crash)."""
    if proc is not None:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            proc.send_signal(signal.SIGKILL)


def read_tail(stream: IO[str] | None) -> str:
    """The last lines of an open stderr file, read without moving its write position."""
    if stream is None or stream.closed:
        return ""
    try:
        fd = stream.fileno()
        size = os.fstat(fd).st_size
        start = max(0, size - TAIL_BYTES)
        data = os.pread(fd, size - start, start)
    except OSError:
        log.exception("tool_server_stderr_unreadable")
        return ""
    lines = data.decode("utf-8", errors="replace").splitlines()
    if start > 0 and lines:
        lines = lines[1:]  # the first line is probably cut
    return "\n".join(lines[-TAIL_LINES:])
