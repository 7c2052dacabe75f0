"""One info log line per lifecycle change of a task, written when the change commits.

Every state change commits with its events (``TaskTx``), and the store hands each locally
committed batch to the event bus (``EventBus.events_committed``), which calls :func:`log_committed`:
so every command (``services/tasks.py``) and every worker transition (``services/jobs.py``,
``services/journal.py``) gets its line exactly once, after its commit, in the process that made
it (commits of other replicas, seen through ``NOTIFY``, are logged by those replicas). Lines are
structlog events with ``task_id`` and a few bound fields picked per event type; never prompts,
step outputs, tool arguments or results, reasons or feedback (the event payloads that hold
them are not logged).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog

from agent_runtime.domain.events import Event

log = structlog.get_logger(__name__)

LIFECYCLE: dict[str, tuple[str, tuple[str, ...]]] = {
    "task_created": ("task_submitted", ("status",)),
    "planning_started": ("task_planning", ("revision",)),
    "plan_invalid": ("plan_invalid", ()),
    "plan_proposed": ("task_planned", ("plan_version", "author", "attempts")),
    "approval_required": ("task_awaiting_approval", ("plan_version",)),
    "plan_edited": ("plan_edited", ("plan_version", "based_on", "actor")),
    "revision_requested": ("revision_requested", ("plan_version", "actor")),
    "approval_recorded": ("approval_recorded", ("plan_version", "actor", "approvals", "required")),
    "task_approved": ("task_approved", ("plan_version", "actor", "approvers")),
    "task_rejected": ("task_rejected", ("plan_version", "actor")),
    "execution_started": ("execution_started", ("plan_version",)),
    "task_resumed": ("task_resumed", ("phase", "worker")),
    "step_completed": ("step_finished", ("step_id",)),
    "step_failed": ("step_finished", ("step_id",)),
    "needs_attention": ("task_needs_attention", ("step_id", "tool", "tool_call_id")),
    "attention_resolved": ("attention_resolved", ("tool_call_id", "action", "actor")),
    "task_retried": ("task_retried", ("plan_version", "actor")),
    "task_completed": ("task_completed", ()),
    "task_failed": ("task_failed", ()),
    "task_cancelled": ("task_cancelled", ("previous_status", "actor")),
    "step_retrying": ("step_retrying", ("step_id", "attempt", "attempts", "retry_at")),
    "step_skipped": ("step_skipped", ("step_id", "attempts")),
    "replan_requested": ("task_replanning", ("step_id", "replan", "max_replans")),
    "verification_completed": ("task_verified", ("met",)),
}
"""Stored event type -> (log event name, the payload fields the line carries)."""


def log_committed(events: Sequence[Event]) -> None:
    """Log the lifecycle changes among ``events`` (just committed by this process)."""
    for event in events:
        found = LIFECYCLE.get(event.type)
        if found is None:
            continue  # text deltas, tool calls, progress: the event stream has them
        name, keys = found
        fields: dict[str, Any] = {key: event.data.get(key) for key in keys}
        if event.type in ("step_completed", "step_failed"):
            fields["status"] = "completed" if event.type == "step_completed" else "failed"
        error = event.data.get("error")
        if isinstance(error, dict):
            fields["code"] = error.get("code")
        log.info(name, task_id=event.task_id, seq=event.seq, **fields)
