"""The SSE stream's body: frames encoded once, pending events sent as one chunk, gaps re-read from the store."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import anyio
from httpx_sse import aconnect_sse

from agent_runtime.api.sse import LastChunk
from agent_runtime.api.stream import LiveFrames, _follow, encode
from agent_runtime.domain.events import Event
from agent_runtime.runtime import Runtime
from agent_runtime.services.bus import EventBus
from tests.support.harness import live_service, make_settings, read_stream

CREATED = datetime(2026, 11, 21, 9, 0, 0, 123456, tzinfo=UTC)


def _event(seq: int, kind: str = "tool_progress", **data: Any) -> Event:
    return Event(task_id="t1", seq=seq, type=kind, data=data or {"n": seq}, created_at=CREATED)


class _Store:
    """The one read the stream's body makes; ``on_read`` runs once the replay has read (commits "meanwhile")."""

    def __init__(self, events: list[Event], on_read: Callable[[], None] = lambda: None) -> None:
        self.events = events
        self.on_read = on_read
        self.reads = 0

    async def events_after(self, task_id: str, after: int, limit: int) -> list[Event]:
        self.reads += 1
        found = [e for e in self.events if e.seq > after][:limit]
        self.on_read()
        return found

    async def get_task(self, task_id: str) -> Any:
        raise AssertionError("the stream's body does not read the task row (the route read it)")


def _runtime(store: _Store, bus: EventBus) -> Runtime:
    metrics = SimpleNamespace(sse_client_connected=lambda: None, sse_client_disconnected=lambda: None)
    return cast(Runtime, SimpleNamespace(tasks=store, bus=bus, metrics=metrics, runner=SimpleNamespace(draining=False)))


def test_an_encoded_frame_is_id_event_and_one_line_of_compact_json() -> None:
    # The bytes sse-starlette's ServerSentEvent(data=..., event=..., id=...).encode() wrote, when we used it.
    assert encode(_event(7)) == (
        b'id: 7\r\nevent: tool_progress\r\ndata: {"task_id":"t1","seq":7,"type":"tool_progress",'
        b'"data":{"n":7},"created_at":"2026-11-21T09:00:00.123456+00:00"}\r\n\r\n'
    )
    event = _event(8, "text_delta", text="two\nlines\r\nand ünïcode \u2028")
    lines = encode(event).split(b"\r\n")
    assert lines[:2] == [b"id: 8", b"event: text_delta"] and lines[3:] == [b"", b""]
    assert lines[2].startswith(b"data: ") and lines[2].isascii() and b"\n" not in lines[2]
    assert json.loads(lines[2][len(b"data: ") :]) == event.to_json()


def test_live_frames_encode_each_event_object_once() -> None:
    frames = LiveFrames(size=2)
    a, b, c = _event(1), _event(2), _event(3)
    first = frames(a)
    assert frames(a) is first  # the same bytes for every follower
    frames(b)
    frames(c)  # evicts a
    again = frames(a)
    assert again == first and again is not first
    assert frames(_event(1)) == first  # another object with the same content: encoded again, same bytes


async def test_events_pending_together_go_out_as_one_chunk_in_order_and_the_stream_ends_at_the_terminal() -> None:
    bus = EventBus()
    replayed = [_event(1), _event(2)]
    live = [_event(3), _event(4), _event(5)]
    store = _Store(replayed, on_read=lambda: bus.events_committed(live))  # committed while we were reading
    body = _follow(_runtime(store, bus), "t1", start=0, known=2)
    with anyio.fail_after(5):
        assert await anext(body) == encode(replayed[0]) + encode(replayed[1])  # the replay: one chunk
        assert await anext(body) == b"".join(map(encode, live))  # three pending live events: one chunk
        store.on_read = lambda: None
        done, after = _event(6, "task_completed"), _event(7)
        bus.events_committed([done, after])
        last = await anext(body)
        assert last == encode(done) and isinstance(last, LastChunk)  # nothing after the terminal event
        assert [chunk async for chunk in body] == []
    assert bus.subscriber_count() == 0


async def test_live_duplicates_are_dropped_and_a_gap_is_filled_from_the_store() -> None:
    bus = EventBus()
    stored = [_event(1), _event(2), _event(3), _event(4)]
    store = _Store(stored[:1])

    def commit_with_a_gap() -> None:
        store.on_read = lambda: None
        store.events = stored
        bus.events_committed([stored[0], stored[2], stored[3]])  # 1 was replayed already, 2 never arrived live

    store.on_read = commit_with_a_gap
    body = _follow(_runtime(store, bus), "t1", start=0, known=0)
    with anyio.fail_after(5):
        assert await anext(body) == encode(stored[0])
        assert await anext(body) == b"".join(map(encode, stored[1:]))  # re-read: 2, 3, 4 once each, in order
        await body.aclose()


async def test_an_overflowed_subscription_re_reads_from_the_store() -> None:
    bus = EventBus(max_buffer=2)
    stored = [_event(n) for n in range(1, 6)]
    store = _Store([])

    def flood() -> None:
        store.on_read = lambda: None
        store.events = stored
        bus.events_committed(stored)  # more than the buffer holds: dropped, marked overflowed

    store.on_read = flood
    body = _follow(_runtime(store, bus), "t1", start=0, known=0)
    with anyio.fail_after(5):
        assert await anext(body) == b"".join(map(encode, stored))
        await body.aclose()


async def test_a_stream_opened_on_a_finished_task_ends_after_its_replay() -> None:
    bus = EventBus()
    stored = [_event(1), _event(2), _event(3, "task_completed")]
    store = _Store(stored)
    with anyio.fail_after(5):
        body = _follow(_runtime(store, bus), "t1", start=1, known=3, finished=True)
        assert [chunk async for chunk in body] == [encode(stored[1]) + encode(stored[2])]
        # a client that already has everything: the replay is empty and the stream ends at once
        caught_up = _follow(_runtime(store, bus), "t1", start=3, known=3, finished=True)
        assert [chunk async for chunk in caught_up] == []
    assert store.reads == 2 and bus.subscriber_count() == 0


async def test_a_task_that_finishes_after_the_stream_opened_ends_it_through_the_bus() -> None:
    bus = EventBus()
    store = _Store([_event(1)])
    done = _event(2, "task_completed")
    body = _follow(_runtime(store, bus), "t1", start=0, known=1)
    with anyio.fail_after(5):
        assert await anext(body) == encode(_event(1))
        bus.events_committed([done])
        assert [chunk async for chunk in body] == [encode(done)]
    assert store.reads == 1 and bus.subscriber_count() == 0


async def test_the_runtime_shutdown_event_ends_open_streams_cleanly_and_new_ones_at_once(tmp_path: Path) -> None:
    async with live_service(make_settings(tmp_path)) as live:
        created = await live.submit("Echo hello.")
        await live.wait_for(created["id"], "approval_required")  # the task now waits: its stream stays open
        seen: list[str] = []
        with anyio.fail_after(10):
            async with aconnect_sse(live.client, "GET", f"/v1/tasks/{created['id']}/stream") as source:
                async for sse in source.aiter_sse():
                    if sse.event == "approval_required":
                        live.runtime.shutdown_event.set()  # what the drain does first
                    seen.append(sse.event)
                # the body ended without a protocol error: the response was completed, not cut off
        assert seen[-1] == "approval_required"
        assert live.runtime.bus.subscriber_count() == 0
        with anyio.fail_after(10):
            late = await read_stream(live.client, created["id"])  # ends by itself, whatever it replayed
        assert len(late) <= len(seen)  # at most the stored events, then it ends
