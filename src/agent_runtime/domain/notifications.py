"""Which event types can be sent to webhooks (``webhooks`` in ``config.yaml``). Pure data.

The webhooks migration's trigger (``store/migrations/versions/*_webhooks.py``) copies events of
exactly these types into the webhook outbox, in the transaction that stores them;
``tests/webhooks/test_outbox.py`` keeps the two lists equal. Some are emitted by features still
being built (call gates, budgets, approval expiry); they can be subscribed to already.
"""

from __future__ import annotations

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
