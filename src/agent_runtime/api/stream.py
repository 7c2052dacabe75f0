"""``GET /v1/tasks/{id}/stream``: the task's events over SSE, resumable with ``Last-Event-ID``.

Replays stored events after the client's position, then follows live events pushed by the event
bus (no per-client polling), filling any gap from the store. Closes after the terminal event, or
when the service drains (clients then reconnect, possibly to another replica).
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Callable
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request

from agent_runtime.api.auth import GuardedRoute, access, principal_of
from agent_runtime.api.deps import runtime_of
from agent_runtime.api.sse import LastChunk, SSEResponse
from agent_runtime.api.tasks import TaskId
from agent_runtime.domain.events import Event
from agent_runtime.domain.identity import Permission
from agent_runtime.domain.inputs import CURSOR_PATTERN, MAX_CURSOR
from agent_runtime.domain.states import is_terminal
from agent_runtime.errors import InputValidationError
from agent_runtime.runtime import Runtime

router = APIRouter(prefix="/v1/tasks", tags=["stream"], route_class=GuardedRoute)

PAGE = 500

_compact = json.JSONEncoder(separators=(",", ":")).encode
"""``json.dumps(obj, separators=(",", ":"))`` without building an encoder per call."""


def encode(event: Event) -> bytes:
    """The event's SSE frame: ``id`` (its sequence number), ``event`` (its type), one ``data`` line.

    ``json.dumps`` escapes newlines and non-ASCII, so the data always fits on one line. (Byte for byte
    what ``sse_starlette.ServerSentEvent(...).encode()`` wrote when the service used that library.)
    """
    data = _compact(event.to_json())
    return f"id: {event.seq}\r\nevent: {event.type}\r\ndata: {data}\r\n\r\n".encode()


class LiveFrames:
    """Frames of live events, encoded once for all followers of a task.

    The bus hands the same :class:`Event` object to every subscriber, so the memo is keyed by the
    object; it keeps the object, so its ``id`` cannot be reused while the entry lives. The oldest
    entries go first: an event is only looked up while its fan-out is in progress.
    """

    def __init__(self, size: int = 1024) -> None:
        self._size = size
        self._frames: dict[int, tuple[Event, bytes]] = {}

    def __call__(self, event: Event) -> bytes:
        hit = self._frames.get(id(event))
        if hit is not None and hit[0] is event:
            return hit[1]
        frame = encode(event)
        if len(self._frames) >= self._size:
            del self._frames[next(iter(self._frames))]
        self._frames[id(event)] = (event, frame)
        return frame


_live_frames = LiveFrames()


def _chunk(events: list[Event], frame: Callable[[Event], bytes]) -> tuple[bytes, bool]:
    """Up to and including a terminal event, the frames of ``events`` as one chunk (one write). A
    chunk that ends with the terminal event is the stream's last (:class:`LastChunk`)."""
    for i, event in enumerate(events):
        if event.is_terminal:
            events = events[: i + 1]
            return LastChunk(b"".join(map(frame, events))), True
    return b"".join(map(frame, events)), False


def _position(last_event_id: str | None, after: int | None, known: int) -> int:
    """Where the replay starts. Checked before the stream starts (a 422, not a broken stream). A
    position beyond the task's last event means "from now on", so the stream still ends with the
    task's final event."""
    position = after or 0
    if last_event_id is not None and last_event_id.strip():
        value = last_event_id.strip()
        if not value.isascii() or not value.isdigit() or int(value) > MAX_CURSOR:
            raise InputValidationError(
                f"Last-Event-ID must be an event sequence number from 0 to {MAX_CURSOR}",
                details={"field": "Last-Event-ID"},
            )
        position = int(value)
    return min(position, known)


async def _follow(
    runtime: Runtime, task_id: str, start: int, known: int, finished: bool = False
) -> AsyncGenerator[bytes, None]:
    """The stream's body: chunks of SSE frames. Events that are pending together go out as one chunk.

    ``known`` and ``finished`` are the task's last sequence number and whether it had reached a
    terminal status when the stream was opened (the route's read of the task row).
    """
    # Subscribe before reading the store: nothing committed in between can be missed. ``known`` tells
    # the bus where live delivery starts; the replay covers the rest. From the subscription on, every
    # commit is either in a replay or pushed to ``sub``, so the task row is not read again: only a task
    # that had already finished when the stream was opened pushes nothing more, and its replay ends it.
    sub = runtime.bus.subscribe(task_id, after=known)
    runtime.metrics.sse_client_connected()
    last = start
    try:
        while True:  # replay from the store, then follow the bus
            while True:
                batch = await runtime.tasks.events_after(task_id, last, PAGE)
                if batch:
                    chunk, done = _chunk(batch, encode)
                    yield chunk
                    if done:
                        return
                    last = batch[-1].seq
                if len(batch) < PAGE:
                    break
            if finished:
                return  # the replay had everything up to now; the client has the terminal event
            if runtime.runner.draining:
                return  # this replica is going away: the client reconnects elsewhere
            while True:
                await sub.wait()
                if sub.closed:
                    return
                if sub.overflowed:
                    sub.overflowed = False
                    sub.drain()
                    break  # re-read from the store
                pending = sub.drain()
                if pending and pending[0].seq <= last:
                    pending = [e for e in pending if e.seq > last]
                if not pending:
                    continue
                if pending[0].seq != last + 1 or pending[-1].seq - pending[0].seq != len(pending) - 1:
                    break  # a gap: the store has what we missed
                chunk, done = _chunk(pending, _live_frames)
                yield chunk
                if done:
                    return
                last = pending[-1].seq
    finally:
        runtime.bus.unsubscribe(sub)
        runtime.metrics.sse_client_disconnected()


@router.get("/{task_id}/stream", summary="Follow a task's events (SSE)", openapi_extra=access(Permission.READ))
async def stream(
    task_id: TaskId,
    request: Request,
    after: Annotated[
        int | None, Query(ge=0, le=MAX_CURSOR, description="Replay events after this sequence number")
    ] = None,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            pattern=CURSOR_PATTERN,
            description=f"Resume after this event sequence number (0 to {MAX_CURSOR})",
        ),
    ] = None,
) -> SSEResponse:
    runtime = runtime_of(request)
    task = await runtime.tasks.get(task_id, principal_of(request))  # 404 before the stream starts
    start = _position(last_event_id, after, task.last_seq)
    return SSEResponse(
        _follow(runtime, task_id, start, task.last_seq, is_terminal(task.status)),
        ping_seconds=runtime.settings.server.sse_ping_seconds,
        send_timeout=30,
        shutdown=runtime.shutdown_event,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
