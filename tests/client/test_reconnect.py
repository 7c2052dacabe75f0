"""The event iterator survives dropped connections: every event exactly once, in order.

A proxy between the client and the real service cuts the stream's connection in the middle of a
frame (tests/support/dropping_proxy.py), as a load balancer timing out or a network blip would.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from agent_runtime.client import AsyncClient, Backoff, Client, EventOut, NotFound
from tests.support.dropping_proxy import dropping_proxy
from tests.support.harness import Live, live_service, make_settings, read_stream

PROMPT = "Write a note named hello saying hi, then read the note hello back."
FAST = Backoff(first=0.01, maximum=0.05, attempts=3)


async def _completed_task(live: Live) -> list[dict[str, object]]:
    """A task run to completion; its stored events as read straight from the service."""
    task = await live.submit(PROMPT)
    await live.wait_for(task["id"], "approval_required")
    await live.approve(task["id"], 1)
    return await read_stream(live.client, task["id"], until="task_completed")


def _same(events: list[EventOut], stored: list[dict[str, object]]) -> None:
    assert [(e.seq, e.type, e.data) for e in events] == [(s["seq"], s["type"], s["data"]) for s in stored]


async def test_the_sync_iterator_reconnects_with_last_event_id_and_delivers_every_event_once(tmp_path: Path) -> None:
    async with live_service(make_settings(tmp_path)) as live:
        stored = await _completed_task(live)
        async with dropping_proxy(live.url, cuts=[2, 3, 1]) as proxy:

            def follow() -> list[EventOut]:
                with Client(proxy.url, backoff=FAST) as client:
                    return list(client.events(str(stored[0]["task_id"])))

            with anyio.fail_after(30):
                events = await anyio.to_thread.run_sync(follow)
    assert proxy.dropped == 3
    assert proxy.stream_requests == [None, "2", "5", "6"]
    _same(events, stored)


async def test_the_async_iterator_following_a_running_task_loses_and_repeats_nothing_across_drops(
    tmp_path: Path,
) -> None:
    async with live_service(make_settings(tmp_path)) as live:
        task = await live.submit(PROMPT)
        before = await live.wait_for(task["id"], "approval_required")
        async with dropping_proxy(live.url, cuts=[2, 2, 2, 2]) as proxy, AsyncClient(proxy.url, backoff=FAST) as client:
            seen: list[EventOut] = []
            with anyio.fail_after(30):
                async with anyio.create_task_group() as tg:

                    async def follow() -> None:
                        seen.extend([e async for e in client.events(task["id"], after=len(before))])

                    tg.start_soon(follow)
                    await live.approve(task["id"], 1)
        stored = await read_stream(live.client, task["id"], after=len(before))
    assert proxy.dropped == 4 and len(proxy.stream_requests) == 5
    resumed_at = [int(i) for i in proxy.stream_requests[1:] if i is not None]
    assert resumed_at == [len(before) + 2 * n for n in range(1, 5)]
    assert seen[-1].type == "task_completed"
    _same(seen, stored)


async def test_events_replayed_twice_by_the_service_are_delivered_once(tmp_path: Path) -> None:
    async with live_service(make_settings(tmp_path)) as live:
        stored = await _completed_task(live)
        # The proxy hides Last-Event-ID from the service, so each reconnect replays from event 1.
        async with (
            dropping_proxy(live.url, cuts=[4, 6], forget_position=True) as proxy,
            AsyncClient(proxy.url, backoff=FAST) as client,
        ):
            with anyio.fail_after(30):
                events = [e async for e in client.events(str(stored[0]["task_id"]))]
    assert proxy.stream_requests == [None, "4", "6"]
    _same(events, stored)


async def test_following_a_finished_task_from_its_last_event_ends_at_once(tmp_path: Path) -> None:
    async with live_service(make_settings(tmp_path)) as live, AsyncClient(live.url, backoff=FAST) as client:
        stored = await _completed_task(live)
        task_id = str(stored[0]["task_id"])
        with anyio.fail_after(10):
            assert [e async for e in client.events(task_id, after=len(stored))] == []
            tail = [e async for e in client.events(task_id, after=len(stored) - 1)]
        assert [e.type for e in tail] == ["task_completed"]
        with pytest.raises(NotFound):
            async for _ in client.events("task_000000000000000000000000"):
                pass
