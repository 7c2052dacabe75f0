"""Exit codes of the operator commands (documented in the README and in ``--help``)."""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    OK = 0
    """The command did what it was asked; for ``watch`` and ``--wait``: the task completed."""
    FAILED = 1
    """The task failed, the service refused the request (not found, wrong state), or it was unreachable."""
    USAGE = 2
    """Bad arguments, or a request the service rejected as invalid (``validation_error``)."""
    STOPPED = 3
    """The task was rejected or cancelled."""
    WAITING = 4
    """The task waits for a decision: a plan to approve, a gated or in-doubt tool call, a spent budget."""


def for_status(status: str) -> Exit:
    """The exit code that reports a task's status (``watch``, ``--wait``)."""
    if status == "failed":
        return Exit.FAILED
    if status in ("rejected", "cancelled"):
        return Exit.STOPPED
    if status in ("awaiting_approval", "needs_attention"):
        return Exit.WAITING
    return Exit.OK


EPILOG = """exit codes:
  0  ok; for watch and --wait: the task completed
  1  the task failed, or the service refused the request (not found, wrong state) or was unreachable
  2  usage error, or a request the service rejected as invalid (validation_error)
  3  the task was rejected or cancelled
  4  the task waits for a decision (a plan to approve, a gated or in-doubt call, a spent budget)"""
