"""In-process fan-out of committed events, and the "work available" wake-up for workers.

The store hands every committed batch of events to :meth:`EventBus.events_committed`; each local
subscriber of that task gets them pushed without a database query. On PostgreSQL a single
``LISTEN`` connection per process (:mod:`agent_runtime.services.pg_listener`) reports commits made
by other replicas; the bus then reads the new events once per task and fans them out, so database
load does not grow with the number of connected clients.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

import anyio

from agent_runtime.domain.events import Event
from agent_runtime.services.lifecycle_log import log_committed

Fetcher = Callable[[str, int], Awaitable[list[Event]]]


class Subscriber(Protocol):
    """What the bus hands a task's events to: a :class:`Subscription` or a :class:`Watch`."""

    task_id: str

    def push(self, event: Event) -> None: ...
    def mark_stale(self) -> None: ...
    def close(self) -> None: ...


S = TypeVar("S", bound=Subscriber)


class Subscription:
    """Events of one task, in order, for one consumer. Use as a context manager via ``EventBus.subscribe``.

    One consumer waits at a time. Waking it is a plain future resolved by the first push (no event
    object or cancel scope per wait): with a thousand followers of a task, every event wakes each
    of them, so this is on the fan-out's hot path.
    """

    def __init__(self, task_id: str, max_buffer: int) -> None:
        self.task_id = task_id
        self._items: deque[Event] = deque()
        self._max = max_buffer
        self._waiter: asyncio.Future[None] | None = None
        self.overflowed = False
        """True when events were dropped because the consumer was slow; re-read from the store."""
        self.closed = False

    @property
    def ready(self) -> bool:
        """Something to act on: events, an overflow (re-read) or the end of the subscription."""
        return bool(self._items) or self.overflowed or self.closed

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def push(self, event: Event) -> None:
        if len(self._items) >= self._max:
            self._items.clear()
            self.overflowed = True
        else:
            self._items.append(event)
        self._wake()

    def mark_stale(self) -> None:
        self.overflowed = True
        self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    def drain(self) -> list[Event]:
        items = list(self._items)
        self._items.clear()
        return items

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait until something was pushed (True) or ``timeout`` passed (False); no timeout: until pushed."""
        if self.ready:
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        try:
            if timeout is None:
                await waiter
            else:
                with anyio.move_on_after(timeout):
                    await waiter
        finally:
            if self._waiter is waiter:
                self._waiter = None
        return self.ready


class Watch:
    """A subscriber that acts on each event as it is delivered, in the delivering call, instead of
    being awaited by a task of its own (the runner's cancel watch: one per running job, and every
    event of the task passes it). ``on_stale`` is told when events may have been missed."""

    def __init__(self, task_id: str, on_event: Callable[[Event], None], on_stale: Callable[[], object]) -> None:
        self.task_id = task_id
        self._on_event = on_event
        self._on_stale = on_stale

    def push(self, event: Event) -> None:
        self._on_event(event)

    def mark_stale(self) -> None:
        self._on_stale()

    def close(self) -> None:
        pass  # shutdown ends the watched job by draining, not through its watch


class EventBus:
    """Implements the store's listener protocol; hands events to subscribers and wakes workers."""

    def __init__(self, *, max_buffer: int = 10_000) -> None:
        self._subs: dict[str, set[Subscriber]] = {}
        self._delivered: dict[str, int] = {}
        self._max_buffer = max_buffer
        self._work = anyio.Event()
        self._commit_hooks: list[Callable[[Sequence[Event]], None]] = []

    def on_commit(self, hook: Callable[[Sequence[Event]], None]) -> None:
        """Also hand every batch this process commits to ``hook`` (the webhook deliverer's wake-up)."""
        self._commit_hooks.append(hook)

    # -- store listener ---------------------------------------------------------------------------

    def events_committed(self, events: Sequence[Event]) -> None:
        """This process committed ``events``: log the lifecycle changes and deliver them."""
        log_committed(events)
        self._deliver(events)
        for hook in self._commit_hooks:
            hook(events)

    def _deliver(self, events: Sequence[Event]) -> None:
        for event in events:
            subs = self._subs.get(event.task_id)
            if not subs:
                continue
            if event.seq <= self._delivered.get(event.task_id, 0):
                continue  # already delivered (our own commit, echoed back by NOTIFY)
            self._delivered[event.task_id] = event.seq
            for sub in subs:
                sub.push(event)

    def work_available(self) -> None:
        self._work.set()

    # -- remote commits (PostgreSQL NOTIFY) -------------------------------------------------------

    async def remote_commit(self, task_id: str, last_seq: int, work: bool, fetch: Fetcher) -> None:
        """Another process committed events up to ``last_seq`` for ``task_id``: if someone here
        follows the task and has not seen them, read them once with ``fetch`` (the store's
        ``events_after``) and fan them out."""
        if work:
            self.work_available()
        if not self._subs.get(task_id):
            return
        known = self._delivered.get(task_id, 0)
        if last_seq <= known:
            return
        self._deliver(await fetch(task_id, known))

    def resync_all(self) -> None:
        """After the listener reconnects, notifications may have been missed: let subscribers re-read."""
        for subs in self._subs.values():
            for sub in subs:
                sub.mark_stale()
        self.work_available()

    # -- consumers --------------------------------------------------------------------------------

    def subscribe(self, task_id: str, *, after: int = 0) -> Subscription:
        return self._add(Subscription(task_id, self._max_buffer), after)

    def watch(
        self, task_id: str, on_event: Callable[[Event], None], on_stale: Callable[[], object], *, after: int = 0
    ) -> Watch:
        """Call ``on_event`` with each event of ``task_id`` committed after ``after``, as it is delivered."""
        return self._add(Watch(task_id, on_event, on_stale), after)

    def _add(self, sub: S, after: int) -> S:
        self._subs.setdefault(sub.task_id, set()).add(sub)
        self._delivered.setdefault(sub.task_id, after)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        subs = self._subs.get(sub.task_id)
        if subs is None:
            return
        subs.discard(sub)
        if not subs:
            del self._subs[sub.task_id]
            self._delivered.pop(sub.task_id, None)

    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._subs.values())

    async def wait_for_work(self, timeout: float) -> None:
        """Return when work may be available, or after ``timeout`` (the safety poll)."""
        with anyio.move_on_after(timeout):
            await self._work.wait()
        self._work = anyio.Event()

    def close_all(self) -> None:
        """Shutdown: end every subscription so SSE clients reconnect elsewhere."""
        for subs in self._subs.values():
            for sub in subs:
                sub.close()
