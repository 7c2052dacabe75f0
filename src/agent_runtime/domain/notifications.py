"""Webhooks as data: which event types can be sent (``webhooks`` in ``config.yaml``) and what a
delivery of one event to one endpoint looks like. Pure data.

The webhooks migration's trigger (``store/migrations/versions/*_webhooks.py``) copies events of
exactly these types into the webhook outbox, in the transaction that stores them;
``tests/webhooks/test_outbox.py`` keeps the two lists equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

NOTIFIABLE_EVENTS: tuple[str, ...] = (
    "approval_required",
    "call_approval_required",
    "needs_attention",
    "budget_exceeded",
    "approval_expired",
    "task_completed",
    "task_failed",
    "task_cancelled",
    "task_rejected",
)
"""Event types a webhook endpoint may subscribe to: what waits for a person, and the final events."""

DeliveryStatus = Literal["pending", "delivered", "failed"]
DELIVERY_STATUSES: tuple[DeliveryStatus, ...] = ("pending", "delivered", "failed")


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event to one endpoint, and how sending it went."""

    id: int
    task_id: str
    seq: int
    type: str
    endpoint_id: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime

    @property
    def message_id(self) -> str:
        """The ``webhook-id``: one per event, the same on every attempt and to every endpoint."""
        return message_id(self.task_id, self.seq)


def message_id(task_id: str, seq: int) -> str:
    return f"evt_{task_id}_{seq}"
