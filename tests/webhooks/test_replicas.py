"""Webhooks with several replicas and across restarts: each event is sent once by whichever replica
claims it, and a send cut short by shutdown is handed back and sent again after the restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import sqlalchemy as sa

from agent_runtime.settings import DatabaseSettings, Settings
from agent_runtime.store import schema as t
from agent_runtime.store.engine import create_engine
from tests.support.databases import database_url, require_postgres
from tests.support.harness import Live, live_service, make_settings
from tests.support.webhook_receiver import Receiver, serve_receiver, unused_port
from tests.webhooks.test_delivery import PROMPT, deliveries, endpoint, new_secret, verified, wait_for_deliveries


async def test_two_replicas_send_each_event_once(tmp_path: Path) -> None:
    require_postgres()
    secret = new_secret()
    rx = Receiver()
    async with serve_receiver(rx) as url, database_url("postgres", tmp_path) as db:

        def settings(name: str) -> Settings:
            folder = tmp_path / name
            folder.mkdir()
            return make_settings(
                folder,
                database={"url": db, "auto_migrate": True},
                runner={"worker_id": name},
                webhooks={"endpoints": [endpoint(url, secret, ["approval_required"])], "poll_seconds": 0.5},
            )

        async with live_service(settings("a")) as a, live_service(settings("b")) as b:
            task_ids = [(await (a if i % 2 else b).submit(PROMPT))["id"] for i in range(6)]
            await rx.wait_for(lambda r: len({q.headers["webhook-id"] for q in r.requests}) == 6)
            record = await _all_delivered(a, b)
    assert len(rx.requests) == 6  # no event was sent twice
    assert sorted(verified(secret, r)["data"]["task_id"] for r in rx.requests) == sorted(task_ids)
    assert [(d["status"], d["attempts"]) for d in record] == [("delivered", 1)] * 6


async def _all_delivered(*replicas: Live) -> list[dict[str, Any]]:
    """The delivery record once every delivery is delivered, re-read after each attempt any replica records."""
    with anyio.fail_after(30):
        while True:
            seen = [r.runtime.webhooks.attempts_recorded for r in replicas]
            record = await deliveries(replicas[0])
            if all(d["status"] == "delivered" for d in record):
                return record
            async with anyio.create_task_group() as tg:

                async def next_attempt(live: Live, count: int) -> None:
                    await live.runtime.webhooks.wait_attempts(count)
                    tg.cancel_scope.cancel()

                for live, count in zip(replicas, seen, strict=True):
                    tg.start_soon(next_attempt, live, count)


async def test_a_send_cut_short_by_shutdown_is_handed_back_and_sent_after_restart(tmp_path: Path) -> None:
    secret = new_secret()
    hold = anyio.Event()
    stuck = Receiver(hold=hold)  # takes the request and never answers
    port = unused_port()
    hook = endpoint(f"http://127.0.0.1:{port}/hooks", secret, ["approval_required"])
    settings = make_settings(tmp_path, server={"shutdown_grace_seconds": 0.5}, webhooks={"endpoints": [hook]})
    async with serve_receiver(stuck, port=port):
        with anyio.fail_after(30):  # the service stops within its grace although the request hangs
            async with live_service(settings) as live:
                await live.submit(PROMPT)
                await stuck.wait_for(lambda r: len(r.requests) == 1)
        hold.set()

    engine = create_engine(DatabaseSettings(url=settings.database.url))
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(t.webhook_deliveries))).mappings().one()
    await engine.dispose()
    assert (row["status"], row["attempts"], row["claim_owner"]) == ("pending", 0, None)  # handed back

    rx = Receiver()
    async with serve_receiver(rx, port=port), live_service(settings) as live:
        [record] = await wait_for_deliveries(live, lambda d: d[0]["status"] == "delivered")
    assert [r.headers["webhook-id"] for r in rx.requests] == [stuck.requests[0].headers["webhook-id"]]
    assert verified(secret, rx.requests[0])["type"] == "approval_required"
    assert record["attempts"] == 1
