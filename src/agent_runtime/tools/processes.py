"""Server process bookkeeping: find a stdio server's process, kill leftovers, read its stderr tail.

The MCP SDK starts every stdio server in its own session (so its own process group) and kills that
group on close. It does not tell us the pid, so each instance is given a unique marker variable in
its environment; we find the group leader among our children by that marker, and after the SDK's
teardown we SIGKILL any member of the group that is still alive (the last resort against orphans).
A server that daemonizes into a new session escapes by design; none of ours do.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from typing import IO

import psutil

logger = logging.getLogger(__name__)

MARKER_ENV = "AGENT_RUNTIME_TOOL_INSTANCE"
TAIL_BYTES = 4096
TAIL_LINES = 20


def _has_marker(proc: psutil.Process, marker: str) -> bool:
    try:
        return bool(proc.environ().get(MARKER_ENV) == marker)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def find_leader(marker: str) -> psutil.Process | None:
    """The direct child of this process that carries ``marker`` (the server's group leader)."""
    try:
        children = psutil.Process().children(recursive=False)
    except psutil.Error:
        logger.exception("could not list child processes")
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


def group_members(pgid: int, marker: str) -> list[psutil.Process]:
    """Live processes of group ``pgid`` that carry ``marker`` (so a reused pgid is never touched)."""
    if not _group_alive(pgid):
        return []
    members = []
    for proc in psutil.process_iter():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getpgid(proc.pid) == pgid and _has_marker(proc, marker):
                members.append(proc)
    return members


def kill_leftovers(pgid: int, marker: str) -> int:
    """SIGKILL what is left of the server's process group; return how many processes were killed."""
    members = group_members(pgid, marker)
    for proc in members:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            proc.send_signal(signal.SIGKILL)
    if members:
        logger.warning("killed %d leftover process(es) of tool server group %d", len(members), pgid)
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
        logger.exception("could not read a tool server's stderr")
        return ""
    lines = data.decode("utf-8", errors="replace").splitlines()
    if start > 0 and lines:
        lines = lines[1:]  # the first line is probably cut
    return "\n".join(lines[-TAIL_LINES:])
