"""Following a task's events across dropped connections, shared by the sync and async clients.

The stream's events carry gap-free per-task sequence numbers (the SSE ``id``). The follower keeps the
last one it delivered and reconnects with ``Last-Event-ID`` set to it, so the service replays exactly
what came after: nothing lost, and anything seen twice (a replay overlapping what arrived before the
drop) is dropped by sequence number. A connection that delivered events and then dropped is
re-opened at once; failed attempts in a row back off exponentially and give up after
``Backoff.attempts``, raising :class:`~agent_runtime.client.errors.ConnectionFailed`.
"""

from __future__ import annotations

from dataclasses import dataclass

from httpx2 import ServerSentEvent

from agent_runtime.client.errors import ConnectionFailed
from agent_runtime.domain.events import TERMINAL_EVENTS
from agent_runtime.schemas import EventOut

STATUS_EVENTS: frozenset[str] = frozenset(
    {
        "planning_started",
        "approval_required",
        "revision_requested",
        "task_approved",
        "execution_started",
        "task_resumed",
        "needs_attention",
        "attention_resolved",
        "task_retried",
        *TERMINAL_EVENTS,
    }
)
"""Events written with a change of the task's status (after them, a read of the task may differ)."""

SETTLED: frozenset[str] = frozenset(
    {"awaiting_approval", "needs_attention", "completed", "failed", "rejected", "cancelled"}
)
"""Statuses in which a task waits for a person or has finished: nothing happens until someone acts."""

FINAL: frozenset[str] = frozenset({"completed", "failed", "rejected", "cancelled"})


@dataclass(frozen=True, slots=True)
class Backoff:
    """How a follower reconnects: at once after a connection that delivered events, else after
    ``first``, doubling up to ``maximum``; ``attempts`` failed attempts in a row end the stream."""

    first: float = 0.25
    maximum: float = 10.0
    attempts: int = 8


class Resume:
    """Where a follower stands: the last sequence number delivered and the failures in a row."""

    def __init__(self, server: str, after: int, backoff: Backoff) -> None:
        self.server = server
        self.last = after
        self.backoff = backoff
        self.failures = 0
        self.delivered = 0
        self.connections = 0

    def headers(self) -> dict[str, str]:
        return {"Last-Event-ID": str(self.last)} if self.last > 0 else {}

    def connecting(self) -> None:
        self.connections += 1
        self.delivered = 0

    def accept(self, sse: ServerSentEvent) -> EventOut | None:
        """The event in ``sse``, or ``None`` for one already delivered (a replay's overlap)."""
        if not sse.data:
            return None
        event = EventOut.model_validate_json(sse.data)
        if event.seq <= self.last:
            return None
        self.last = event.seq
        self.delivered += 1
        return event

    def dropped(self, reason: str) -> float:
        """Seconds to wait before the next attempt; raises once ``backoff.attempts`` failed in a row."""
        if self.delivered:
            self.failures = 0
        self.failures += 1
        if self.failures > self.backoff.attempts:
            raise ConnectionFailed(self.server, f"{reason} ({self.backoff.attempts} attempts to reconnect failed)")
        if self.failures == 1:
            return 0.0
        return float(min(self.backoff.first * 2 ** (self.failures - 2), self.backoff.maximum))


def is_terminal(event: EventOut) -> bool:
    return event.type in TERMINAL_EVENTS
