"""``GET /v1/tasks/{id}/stream``: the task's events over SSE, resumable with ``Last-Event-ID``.

Replays stored events after the client's position, then follows live events pushed by the event
bus (no per-client polling), filling any gap from the store. Closes after the terminal event, or
when the service drains (clients then reconnect, possibly to another replica).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query
from sse_starlette import EventSourceResponse, ServerSentEvent

from agent_runtime.api.deps import RuntimeDep
from agent_runtime.domain.events import Event
from agent_runtime.domain.states import is_terminal
from agent_runtime.errors import InputValidationError
from agent_runtime.runtime import Runtime

router = APIRouter(prefix="/v1/tasks", tags=["stream"])

PAGE = 500


def _sse(event: Event) -> ServerSentEvent:
    return ServerSentEvent(data=json.dumps(event.to_json(), separators=(",", ":")), event=event.type, id=str(event.seq))


def _position(last_event_id: str | None, after: int | None) -> int:
    if last_event_id is not None and last_event_id.strip():
        try:
            value = int(last_event_id)
        except ValueError:
            raise InputValidationError(
                "Last-Event-ID must be an event sequence number", details={"field": "Last-Event-ID"}
            ) from None
        if value < 0:
            raise InputValidationError("Last-Event-ID must not be negative", details={"field": "Last-Event-ID"})
        return value
    return after or 0


async def _follow(runtime: Runtime, task_id: str, start: int, known: int) -> AsyncIterator[ServerSentEvent]:
    # Subscribe before reading the store: nothing committed in between can be missed. ``known`` (the
    # task's last sequence number) tells the bus where live delivery starts; the replay covers the rest.
    sub = runtime.bus.subscribe(task_id, after=known)
    runtime.metrics.sse_client_connected()
    last = start
    try:
        while True:  # replay from the store, then follow the bus
            while True:
                batch = await runtime.store.events_after(task_id, last, PAGE)
                for event in batch:
                    yield _sse(event)
                    last = event.seq
                    if event.is_terminal:
                        return
                if len(batch) < PAGE:
                    break
            task = await runtime.store.get_task(task_id)
            if is_terminal(task.status):
                if last >= task.last_seq:
                    return  # the client already has everything, terminal event included
                continue  # finished after our read: its terminal event is stored, replay it
            if runtime.runner.draining:
                return  # this replica is going away: the client reconnects elsewhere
            while True:
                await sub.wait(3600)
                if sub.closed:
                    return
                if sub.overflowed:
                    sub.overflowed = False
                    sub.drain()
                    break  # re-read from the store
                pending = [e for e in sub.drain() if e.seq > last]
                if pending and pending[0].seq != last + 1:
                    break  # a gap: the store has what we missed
                for event in pending:
                    yield _sse(event)
                    last = event.seq
                    if event.is_terminal:
                        return
    finally:
        runtime.bus.unsubscribe(sub)
        runtime.metrics.sse_client_disconnected()


@router.get("/{task_id}/stream", summary="Follow a task's events (SSE)")
async def stream(
    task_id: str,
    runtime: RuntimeDep,
    after: Annotated[int | None, Query(ge=0, description="Replay events after this sequence number")] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> EventSourceResponse:
    task = await runtime.store.get_task(task_id)  # 404 before the stream starts
    start = _position(last_event_id, after)
    return EventSourceResponse(
        _follow(runtime, task_id, start, task.last_seq),
        ping=runtime.settings.server.sse_ping_seconds,
        send_timeout=30,
        shutdown_event=runtime.shutdown_event,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
