"""The webhook deliverer: sends the outbox's events to the configured endpoints, signed per
Standard Webhooks, at least once, with retries and exponential backoff.

Every replica runs one. A pass, in one write transaction, fans new outbox rows out into
deliveries (one per subscribed endpoint) and claims due ones (``store/outbox.py``); each claimed
delivery is POSTed on its own task (at most ``webhooks.concurrency`` at once), and its outcome
recorded, fenced by the claim. A claim that is never finished (the replica died) expires after
``webhooks.claim_seconds`` and any replica sends it again: receivers dedupe by ``webhook-id``.

When it runs: at once when this replica commits a notifiable event (the event bus's commit hook),
when a retry comes due, when a send finishes and frees a slot, and every
``webhooks.poll_seconds`` (events committed by other replicas, lost wake-ups).

The request: ``POST <url>`` with ``content-type: application/json`` and

* ``webhook-id``: ``evt_<task_id>_<seq>``, the same for every attempt and endpoint;
* ``webhook-timestamp``: the attempt's time (Unix seconds), so receivers may refuse old replays;
* ``webhook-signature``: ``v1,<base64 HMAC-SHA256>`` over ``id.timestamp.body`` with the endpoint's
  secret (``standardwebhooks.Webhook.sign``);
* body ``{"type", "timestamp", "data": {"task_id", "tenant", "seq", "payload"}}`` (``payload`` is
  the event's ``data``, as in the event catalogue).

A 2xx answer is delivered; anything else (another status, a timeout, a refused connection) is a
failed attempt. Errors recorded name the status or the exception type, never the URL or secret.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import anyio
import httpx2
import structlog
from anyio.abc import TaskGroup
from standardwebhooks import Webhook

from agent_runtime.domain.events import Event
from agent_runtime.domain.notifications import NOTIFIABLE_EVENTS, Delivery, DeliveryStatus, message_id
from agent_runtime.settings import WebhookEndpoint, WebhookSettings
from agent_runtime.store.outbox import Claimed, Outbox
from agent_runtime.store.rows import utcnow

log = structlog.get_logger(__name__)

USER_AGENT = "agent-runtime-webhooks/1"


def backoff(endpoint: WebhookEndpoint, attempts: int) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: exponential, capped, with up
    to 10 % added jitter (so a recovered receiver is not hit by every retry at once)."""
    delay: float = min(endpoint.backoff_cap_seconds, endpoint.backoff_base_seconds * 2.0 ** (attempts - 1))
    return delay + random.uniform(0, delay / 10)


def body(claimed: Claimed) -> bytes:
    """The request body (also what is signed)."""
    d = claimed.delivery
    document = {
        "type": d.type,
        "timestamp": claimed.event_created_at.isoformat().replace("+00:00", "Z"),
        "data": {"task_id": d.task_id, "tenant": claimed.tenant, "seq": d.seq, "payload": claimed.payload},
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


class WebhookDeliverer:
    def __init__(
        self,
        outbox: Outbox,
        settings: WebhookSettings,
        owner: str,
        *,
        http_client: httpx2.AsyncClient | None = None,
    ) -> None:
        self.outbox = outbox
        self.settings = settings
        self.owner = owner
        self.endpoints = {e.id: e for e in settings.endpoints}
        self._signers = {e.id: Webhook(e.secret.get_secret_value()) for e in settings.endpoints}
        self.subscribers: dict[str, list[str]] = {
            typ: [e.id for e in settings.endpoints if typ in e.events] for typ in NOTIFIABLE_EVENTS
        }
        self._http = http_client
        """Made when :meth:`run` starts (and closed when it ends) unless one is given."""
        self._wake = anyio.Event()
        self._stopping = False
        self._in_flight: set[int] = set()
        self._stopped = anyio.Event()
        self._scope: anyio.CancelScope | None = None
        self.attempts_recorded = 0
        """Attempts this replica sent and recorded (see :meth:`wait_attempts`)."""
        self._recorded = anyio.Event()

    # -- wake-ups -------------------------------------------------------------------------------

    def events_committed(self, events: Sequence[Event]) -> None:
        """The bus's commit hook: wake at once when this replica stored a notifiable event."""
        if any(e.type in self.subscribers for e in events):
            self._wake.set()

    async def wait_attempts(self, more_than: int) -> None:
        """Wait until this replica has recorded more than ``more_than`` attempts (tests and embedding
        applications wait on delivery progress with this instead of polling the record)."""
        while self.attempts_recorded <= more_than:
            await self._recorded.wait()

    def wake(self) -> None:
        """Look for due deliveries now (e.g. after a retry was asked for)."""
        self._wake.set()

    # -- the API's reads and commands -----------------------------------------------------------

    async def deliveries(
        self,
        *,
        tenant: str,
        task_id: str | None = None,
        status: DeliveryStatus | None = None,
        endpoint_id: str | None = None,
        limit: int = 50,
        before: int | None = None,
    ) -> list[Delivery]:
        """The tenant's deliveries, newest first (ids below ``before``)."""
        return await self.outbox.page(
            tenant=tenant, task_id=task_id, status=status, endpoint_id=endpoint_id, limit=limit, before=before
        )

    async def resend(self, delivery_id: int, tenant: str) -> Delivery:
        """Send a failed or delivered webhook again, from its first attempt (409 while pending)."""
        delivery = await self.outbox.retry(delivery_id, tenant)
        self.wake()
        return delivery

    # -- the loop -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Deliver until :meth:`stop` (or cancellation)."""
        owned = self._http is None
        if self._http is None:
            self._http = httpx2.AsyncClient(headers={"user-agent": USER_AGENT}, follow_redirects=False)
        try:
            with anyio.CancelScope() as self._scope:
                async with anyio.create_task_group() as tg:
                    await self._loop(tg)
        finally:
            self._stopped.set()
            if owned:
                with anyio.CancelScope(shield=True):
                    await self._http.aclose()
                self._http = None

    async def _loop(self, tg: TaskGroup) -> None:
        endpoints = sorted(self.endpoints)
        while not self._stopping:
            self._wake = anyio.Event()  # reset first: a wake-up during the pass brings another pass
            room = self.settings.concurrency - len(self._in_flight)
            try:
                dispatched, claimed = await self.outbox.dispatch_and_claim(
                    self.subscribers, self.owner, self.settings.claim_seconds, room
                )
                for item in claimed:
                    self._in_flight.add(item.delivery.id)
                    tg.start_soon(self._send, item)
                if dispatched or (claimed and len(claimed) == room):
                    continue  # more may be waiting
                # Every slot busy: a finishing send wakes the loop. Else sleep until the next retry.
                due = await self.outbox.next_due(endpoints) if room > 0 else None
            except Exception:  # the database is away: keep the loop, try again after a poll
                log.exception("webhook_pass_failed")
                due = None
            wait = self.settings.poll_seconds
            if due is not None:
                wait = max(0.0, min(wait, (due - utcnow()).total_seconds()))
            with anyio.move_on_after(wait):
                await self._wake.wait()

    async def _send(self, claimed: Claimed) -> None:
        d = claimed.delivery
        endpoint = self.endpoints[d.endpoint_id]
        finished = False
        try:
            status, error = await self._post(endpoint, claimed)
            now = utcnow()
            attempts = d.attempts + 1
            fields: dict[str, Any] = {
                "attempts": attempts,
                "last_attempt_at": now,
                "last_status_code": status,
                "last_error": error,
            }
            if error is None:
                fields.update(status="delivered", delivered_at=now)
            elif attempts >= endpoint.max_attempts:
                fields.update(status="failed")
            else:
                fields.update(next_attempt_at=now + timedelta(seconds=backoff(endpoint, attempts)))
            with anyio.CancelScope(shield=True):  # the receiver has it: record that, even while stopping
                finished = await self.outbox.finish(d.id, self.owner, **fields)
            self.attempts_recorded += 1
            self._recorded.set()
            self._recorded = anyio.Event()
            log.info(
                "webhook_attempt",
                delivery_id=d.id,
                endpoint=d.endpoint_id,
                event_type=d.type,
                task_id=d.task_id,
                seq=d.seq,
                attempt=attempts,
                status_code=status,
                outcome=fields.get("status", "retry"),
                error=error,
            )
        except Exception:
            log.exception("webhook_record_failed", delivery_id=d.id)  # the claim expires; sent again
        finally:
            self._in_flight.discard(d.id)
            if not finished:
                with anyio.CancelScope(shield=True):
                    try:
                        await self.outbox.release([d.id], self.owner)
                    except Exception:
                        log.exception("webhook_release_failed", delivery_id=d.id)
            self._wake.set()

    async def _post(self, endpoint: WebhookEndpoint, claimed: Claimed) -> tuple[int | None, str | None]:
        """One attempt: (status code, error or None when delivered)."""
        content = body(claimed)
        msg_id = message_id(claimed.delivery.task_id, claimed.delivery.seq)
        now = utcnow()
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self._signers[endpoint.id].sign(msg_id, now, content),
        }
        assert self._http is not None  # sends run inside run()
        try:
            with anyio.fail_after(endpoint.timeout_seconds):
                async with self._http.stream(
                    "POST", endpoint.url, content=content, headers=headers, timeout=endpoint.timeout_seconds
                ) as response:
                    status = response.status_code  # the body is not read: a receiver's answer is its status
        except TimeoutError:
            return None, f"no answer within {endpoint.timeout_seconds:g} s"
        except httpx2.HTTPError as exc:
            return None, _describe(exc, endpoint.url)
        if 200 <= status < 300:
            return status, None
        return status, f"HTTP {status}"

    # -- shutdown -------------------------------------------------------------------------------

    async def stop(self, grace_seconds: float) -> None:
        """Stop claiming; let sends in flight finish for up to ``grace_seconds``, then cancel them
        (their claims are released, so another replica sends them at once)."""
        self._stopping = True
        self._wake.set()
        if self._scope is None:
            return
        with anyio.move_on_after(grace_seconds):
            await self._stopped.wait()
        if not self._stopped.is_set():
            self._scope.cancel()
            await self._stopped.wait()


def _describe(exc: Exception, url: str) -> str:
    """An attempt's error for the record: its type and message, without the URL (it may carry a token)."""
    text = f"{type(exc).__name__}: {exc}".replace(url, "<url>")
    return text[:500]
