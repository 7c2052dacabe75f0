"""The event bus: in-process fan-out, NOTIFY echoes ignored, slow consumers told to re-read."""

from __future__ import annotations

from datetime import UTC, datetime

import anyio

from agent_runtime.domain.events import Event
from agent_runtime.services.bus import EventBus


def _event(seq: int, task: str = "t1") -> Event:
    return Event(task_id=task, seq=seq, type="text_delta", data={"n": seq}, created_at=datetime.now(UTC))


async def test_every_subscriber_of_a_task_gets_its_events_once_and_others_get_none() -> None:
    bus = EventBus()
    a, b, other = bus.subscribe("t1"), bus.subscribe("t1"), bus.subscribe("t2")
    bus.events_committed([_event(1), _event(2)])
    bus.events_committed([_event(2)])  # the same commit echoed back by NOTIFY
    assert [e.seq for e in a.drain()] == [1, 2]
    assert [e.seq for e in b.drain()] == [1, 2]
    assert other.drain() == [] and await other.wait(0.01) is False


async def test_remote_commits_are_fetched_once_per_task_for_all_local_subscribers() -> None:
    bus = EventBus()
    fetched: list[tuple[str, int]] = []

    async def fetch(task_id: str, after: int) -> list[Event]:
        fetched.append((task_id, after))
        return [_event(s) for s in range(after + 1, 4)]

    subs = [bus.subscribe("t1", after=0) for _ in range(50)]
    await bus.remote_commit("t1", 3, work=False, fetch=fetch)
    await bus.remote_commit("t1", 3, work=False, fetch=fetch)  # already delivered: no second fetch
    await bus.remote_commit("t9", 7, work=False, fetch=fetch)  # nobody here follows t9: no fetch
    assert fetched == [("t1", 0)]
    assert all([e.seq for e in s.drain()] == [1, 2, 3] for s in subs)


async def test_a_slow_consumer_is_told_to_re_read_instead_of_growing_without_bound() -> None:
    bus = EventBus(max_buffer=3)
    sub = bus.subscribe("t1")
    bus.events_committed([_event(n) for n in range(1, 6)])
    assert sub.overflowed is True
    assert await sub.wait(0.01) is True


async def test_work_wakeups_and_shutdown_release_waiters() -> None:
    bus = EventBus()
    sub = bus.subscribe("t1")
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(bus.wait_for_work, 60)
            await anyio.lowlevel.checkpoint()
            bus.work_available()
        bus.close_all()
        assert await sub.wait(60) is True and sub.closed
    bus.unsubscribe(sub)
    assert bus.subscriber_count() == 0


async def test_a_consumer_waiting_without_a_timeout_wakes_on_the_next_push_or_close() -> None:
    bus = EventBus()
    sub = bus.subscribe("t1")
    woke: list[bool] = []
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:

            async def consume() -> None:
                woke.append(await sub.wait())
                assert [e.seq for e in sub.drain()] == [1]
                woke.append(await sub.wait())

            tg.start_soon(consume)
            await anyio.wait_all_tasks_blocked()
            bus.events_committed([_event(1)])
            await anyio.wait_all_tasks_blocked()
            sub.close()
    assert woke == [True, True] and sub.closed
