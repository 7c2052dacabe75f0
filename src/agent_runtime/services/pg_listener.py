"""One ``LISTEN`` connection per process on PostgreSQL, feeding the in-process event bus.

Commits by other replicas arrive as ``NOTIFY agent_runtime, '{"task":..,"last":..,"work":..,"o":..}'``
(sent by ``agent_runtime_apply_v2`` and the store's lease release). The listener asks the bus to
fan out what local subscribers have not seen, reading it once through ``fetch`` (the store's
``events_after``). It reconnects with backoff; after a reconnect it tells the bus to resync,
because notifications sent while it was away are lost.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anyio
import asyncpg
import structlog
from anyio.streams.memory import MemoryObjectSendStream

from agent_runtime.services.bus import EventBus, Fetcher
from agent_runtime.store.store import NOTIFY_CHANNEL

log = structlog.get_logger(__name__)


def asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def listen_forever(url: str, bus: EventBus, fetch: Fetcher, origin: str) -> None:
    """Listen until cancelled; notifications this process sent itself (``origin``) are ignored."""
    delay = 0.2
    first = True
    while True:
        try:
            conn = await asyncpg.connect(asyncpg_dsn(url))
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("pg_listener_connect_failed", error=str(exc), retry_in=delay)
            await anyio.sleep(delay)
            delay = min(delay * 2, 5.0)
            continue
        delay = 0.2
        send, receive = anyio.create_memory_object_stream[str](10_000)
        on_notify = _forwarder(send, bus)

        try:
            await conn.add_listener(NOTIFY_CHANNEL, on_notify)
            if not first:
                bus.resync_all()
            first = False
            log.info("pg_listener_ready")
            async with receive:
                while not conn.is_closed():  # checked at least every 5 s so a dead connection is replaced
                    payload: str | None = None
                    with anyio.move_on_after(5):
                        payload = await receive.receive()
                    if payload is not None:  # dispatch outside the timeout: it must never be cut short
                        await _dispatch(bus, fetch, payload, origin)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("pg_listener_lost", error=str(exc))
        finally:
            send.close()  # the notification callback's end; left open it warns when collected
            with anyio.CancelScope(shield=True):
                if not conn.is_closed():
                    await conn.close(timeout=2)


def _forwarder(send: MemoryObjectSendStream[str], bus: EventBus) -> Callable[[Any, int, str, str], None]:
    def on_notify(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            send.send_nowait(payload)
        except anyio.WouldBlock:
            bus.resync_all()

    return on_notify


async def _dispatch(bus: EventBus, fetch: Fetcher, payload: str, origin: str) -> None:
    try:
        msg = json.loads(payload)
        if msg.get("o") == origin:
            return  # our own commit: the bus already delivered it in process
        task_id, last, work = str(msg["task"]), int(msg.get("last", 0)), bool(msg.get("work"))
    except (ValueError, KeyError, TypeError, AttributeError):
        log.warning("pg_listener_bad_payload", size=len(payload))
        return
    await bus.remote_commit(task_id, last, work, fetch)
