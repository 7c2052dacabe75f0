"""Webhooks end to end: real tasks driven through the service, delivered to a receiver on
127.0.0.1, signatures checked with the ``standardwebhooks`` verifier; a receiver that is down for a
while, one that answers 500, and the delivery record in the API. On SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from tests.support.databases import database_url
from tests.support.harness import Live, live_service, make_settings, read_stream
from tests.support.webhook_receiver import Receiver, serve_receiver, unused_port

PROMPT = "Echo hello."


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def endpoint(url: str, secret: str, events: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "id": extra.pop("id", "ops"),
        "url": url,
        "events": events,
        "secret": secret,
        "timeout_seconds": 5,
        "backoff_base_seconds": 0.05,
        "backoff_cap_seconds": 0.2,
        **extra,
    }


@asynccontextmanager
async def service(backend: str, tmp: Path, *endpoints: dict[str, Any], poll: float = 60) -> AsyncIterator[Live]:
    """The service with these webhook endpoints. The poll (60 s) is longer than any wait here on
    purpose: deliveries must start on the commit's wake-up and on retries coming due."""
    async with (
        database_url(backend, tmp) as url,
        live_service(
            make_settings(
                tmp,
                database={"url": url, "auto_migrate": True},
                webhooks={"endpoints": list(endpoints), "poll_seconds": poll},
            )
        ) as live,
    ):
        yield live


async def deliveries(live: Live, **params: Any) -> list[dict[str, Any]]:
    response = await live.client.get("/v1/webhooks/deliveries", params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def wait_for_deliveries(
    live: Live, check: Callable[[list[dict[str, Any]]], bool], timeout: float = 30, **params: Any
) -> list[dict[str, Any]]:
    """Read the delivery record until ``check`` holds, again after each attempt the service records."""
    with anyio.fail_after(timeout):
        while True:
            seen = live.runtime.webhooks.attempts_recorded
            if check(found := await deliveries(live, **params)):
                return found
            await live.runtime.webhooks.wait_attempts(seen)


def verified(secret: str, request: Any) -> dict[str, Any]:
    body: dict[str, Any] = Webhook(secret).verify(request.body, request.headers)
    return body


async def test_events_are_delivered_signed_with_the_event_and_a_stable_id(backend: str, tmp_path: Path) -> None:
    secret = new_secret()
    rx = Receiver()
    async with serve_receiver(rx) as url:
        hook = endpoint(url, secret, ["approval_required", "task_completed"])
        async with service(backend, tmp_path, hook) as live:
            task_id = (await live.submit(PROMPT))["id"]
            await rx.wait_for(lambda r: len(r.requests) >= 1)
            assert (await live.approve(task_id, 1)).status_code == 202
            await rx.wait_for(lambda r: len(r.requests) >= 2)
            stream = {e["type"]: e for e in await read_stream(live.client, task_id, until="task_completed")}
            record = await wait_for_deliveries(live, lambda d: all(x["status"] == "delivered" for x in d))

    assert [verified(secret, r)["type"] for r in rx.requests] == ["approval_required", "task_completed"]
    for request in rx.requests:
        sent = verified(secret, request)
        event = stream[sent["type"]]
        assert sent["data"] == {"task_id": task_id, "tenant": "default", "seq": event["seq"], "payload": event["data"]}
        assert request.headers["webhook-id"] == f"evt_{task_id}_{event['seq']}"
        assert request.headers["content-type"] == "application/json"
        with pytest.raises(WebhookVerificationError):
            Webhook(new_secret()).verify(request.body, request.headers)
        tampered = request.body.replace(b"default", b"evil")
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(tampered, request.headers)
    assert sorted((d["type"], d["attempts"], d["last_status_code"], d["endpoint_id"]) for d in record) == [
        ("approval_required", 1, 200, "ops"),
        ("task_completed", 1, 200, "ops"),
    ]
    assert {d["webhook_id"] for d in record} == {r.headers["webhook-id"] for r in rx.requests}


async def test_only_subscribed_types_go_to_each_endpoint(tmp_path: Path) -> None:
    approvals, finals = Receiver(), Receiver()
    secret = new_secret()
    async with serve_receiver(approvals) as url_a, serve_receiver(finals) as url_f:
        hooks = (
            endpoint(url_a, secret, ["approval_required"], id="approvers"),
            endpoint(url_f, secret, ["task_completed", "task_cancelled"], id="finals"),
        )
        async with service("sqlite", tmp_path, *hooks) as live:
            task_id = (await live.submit(PROMPT))["id"]
            await approvals.wait_for(lambda r: len(r.requests) == 1)
            cancelled = await live.client.post(f"/v1/tasks/{task_id}/cancel", json={"reason": "not now"})
            assert cancelled.status_code == 200, cancelled.text
            await finals.wait_for(lambda r: len(r.requests) == 1)
            await wait_for_deliveries(live, lambda d: len(d) == 2 and all(x["status"] == "delivered" for x in d))
            by_endpoint = await deliveries(live, endpoint="finals")
            assert [d["type"] for d in by_endpoint] == ["task_cancelled"]
    assert verified(secret, approvals.requests[0])["type"] == "approval_required"
    cancel = verified(secret, finals.requests[0])
    assert cancel["type"] == "task_cancelled"
    assert cancel["data"]["payload"]["reason"] == "not now"


async def test_nothing_is_lost_while_the_receiver_is_down(backend: str, tmp_path: Path) -> None:
    secret = new_secret()
    port = unused_port()
    hook = endpoint(f"http://127.0.0.1:{port}/hooks", secret, ["approval_required"], max_attempts=100)
    async with service(backend, tmp_path, hook) as live:
        task_ids = [(await live.submit(PROMPT))["id"] for _ in range(3)]
        # Down: every attempt fails to connect; each delivery is retried with backoff and stays pending.
        down = await wait_for_deliveries(live, lambda d: len(d) == 3 and all(x["attempts"] >= 2 for x in d))
        assert {d["status"] for d in down} == {"pending"}
        assert all(d["last_error"].startswith("ConnectError") and d["last_status_code"] is None for d in down)
        assert str(port) not in json.dumps(down)  # the URL is not recorded
        retry = await live.client.post(f"/v1/webhooks/deliveries/{down[0]['id']}/retry")
        assert retry.status_code == 409, retry.text
        assert retry.json()["error"]["details"]["status"] == "pending"

        rx = Receiver()
        async with serve_receiver(rx, port=port):
            await rx.wait_for(lambda r: len({q.headers["webhook-id"] for q in r.requests}) == 3)
            up = await wait_for_deliveries(live, lambda d: all(x["status"] == "delivered" for x in d))
    sent = [verified(secret, r) for r in rx.requests]
    assert sorted(s["data"]["task_id"] for s in sent) == sorted(task_ids)
    assert all(d["last_status_code"] == 200 and d["last_error"] is None and d["delivered_at"] for d in up)


async def test_a_receiver_answering_500_is_retried_with_backoff_until_it_accepts(backend: str, tmp_path: Path) -> None:
    secret = new_secret()
    rx = Receiver(answers=lambda n: 500 if n < 2 else 204)
    async with serve_receiver(rx) as url:
        hook = endpoint(url, secret, ["approval_required"], backoff_base_seconds=0.2, backoff_cap_seconds=5)
        async with service(backend, tmp_path, hook) as live:
            task_id = (await live.submit(PROMPT))["id"]
            await rx.wait_for(lambda r: len(r.requests) == 3)
            [record] = await wait_for_deliveries(
                live, lambda d: bool(d) and d[0]["status"] == "delivered", task_id=task_id
            )
    assert [r.status for r in rx.requests] == [500, 500, 204]
    assert len({r.headers["webhook-id"] for r in rx.requests}) == 1  # the same message every time
    assert all(verified(secret, r)["data"]["task_id"] == task_id for r in rx.requests)
    gaps = [b.at - a.at for a, b in zip(rx.requests, rx.requests[1:], strict=False)]
    assert gaps[0] >= 0.2 and gaps[1] >= 0.4  # base * 2**(n-1)
    assert (record["attempts"], record["last_status_code"], record["last_error"]) == (3, 204, None)


async def test_a_delivery_fails_after_max_attempts_and_can_be_sent_again(backend: str, tmp_path: Path) -> None:
    secret = new_secret()
    accept = False
    rx = Receiver(answers=lambda _n: 200 if accept else 500)
    async with serve_receiver(rx) as url:
        hook = endpoint(url, secret, ["approval_required"], max_attempts=3)
        async with service(backend, tmp_path, hook) as live:
            task_id = (await live.submit(PROMPT))["id"]
            [failed] = await wait_for_deliveries(live, lambda d: bool(d) and d[0]["status"] == "failed")
            assert (failed["attempts"], failed["last_status_code"], failed["last_error"]) == (3, 500, "HTTP 500")
            assert len(rx.requests) == 3
            assert [d["id"] for d in await deliveries(live, status="failed", task_id=task_id)] == [failed["id"]]
            assert await deliveries(live, status="delivered") == []

            accept = True
            retry = await live.client.post(f"/v1/webhooks/deliveries/{failed['id']}/retry")
            assert retry.status_code == 200, retry.text
            assert (retry.json()["status"], retry.json()["attempts"]) == ("pending", 0)
            [done] = await wait_for_deliveries(live, lambda d: d[0]["status"] == "delivered")
            missing = await live.client.post("/v1/webhooks/deliveries/999999/retry")
    assert (done["attempts"], done["last_status_code"]) == (1, 200)
    assert [r.status for r in rx.requests] == [500, 500, 500, 200]
    assert missing.status_code == 404


async def test_the_delivery_list_pages_and_refuses_bad_filters(tmp_path: Path) -> None:
    rx = Receiver()
    async with (
        serve_receiver(rx) as url,
        service("sqlite", tmp_path, endpoint(url, new_secret(), ["approval_required"])) as live,
    ):
        for _ in range(3):
            await live.submit(PROMPT)
        await rx.wait_for(lambda r: len(r.requests) == 3)
        first = (await live.client.get("/v1/webhooks/deliveries", params={"limit": 2})).json()
        second = (
            await live.client.get("/v1/webhooks/deliveries", params={"limit": 2, "cursor": first["next_cursor"]})
        ).json()
        bad = await live.client.get("/v1/webhooks/deliveries", params={"status": "lost"})
        bad_task = await live.client.get("/v1/webhooks/deliveries", params={"task_id": "nope"})
    ids = [d["id"] for d in first["items"] + second["items"]]
    assert len(ids) == 3 and ids == sorted(ids, reverse=True)
    assert second["next_cursor"] is None
    assert bad.status_code == 422 and "status" in bad.text
    assert bad_task.status_code == 422 and "task_id" in bad_task.text
