"""The HTTP API's request and response bodies: plain pydantic, no FastAPI, no server stack.

The service's routes (``api/``) and the Python client (``client/``) both use these models, so a
client built from them reads and writes exactly what the server does. Importing this module loads
pydantic and the domain's plan schema only, which keeps ``agent-runtime tasks …`` quick to start.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agent_runtime.domain.plan import Plan


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SubmitTask(_In):
    prompt: str = Field(min_length=1, description="The natural-language block to plan and execute.")
    metadata: dict[str, Any] | None = Field(default=None, description="Free-form client data, stored as is.")


class Approve(_In):
    plan_version: int = Field(ge=1, description="The plan version being approved (binding).")
    actor: str | None = Field(default=None, max_length=200)


class Reject(_In):
    reason: str | None = Field(default=None, max_length=4000)
    actor: str | None = Field(default=None, max_length=200)


class Revise(_In):
    feedback: str = Field(min_length=1, max_length=20_000, description="What the planner should change.")
    actor: str | None = Field(default=None, max_length=200)


class EditPlan(_In):
    base_version: int = Field(ge=1, description="The version this edit starts from (must be current).")
    plan: Plan
    actor: str | None = Field(default=None, max_length=200)


class Cancel(_In):
    reason: str | None = Field(default=None, max_length=4000)


class Resolve(_In):
    tool_call_id: str
    action: Literal["retry", "skip", "fail"]
    result: str | None = Field(default=None, description="With skip: the result to record instead of running it.")
    actor: str | None = Field(default=None, max_length=200)


class StepOut(BaseModel):
    id: str
    title: str
    instruction: str
    tools: list[str]
    depends_on: list[str]
    status: str
    output: str | None = None
    error: dict[str, Any] | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


class PlanOut(BaseModel):
    version: int
    content_hash: str
    author: str
    created_at: datetime
    summary: str
    steps: list[StepOut]


class AttentionOut(BaseModel):
    tool_call_id: str
    step_id: str
    tool: str
    arguments: dict[str, Any]


class TaskOut(BaseModel):
    id: str
    status: str
    prompt: str
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    current_plan_version: int | None
    approved_plan_version: int | None
    plan: PlanOut | None
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    needs_attention: list[AttentionOut]
    last_event_seq: int
    links: dict[str, str]


class TaskSummary(BaseModel):
    id: str
    status: str
    created_at: datetime
    updated_at: datetime
    current_plan_version: int | None
    links: dict[str, str]


class TaskPage(BaseModel):
    items: list[TaskSummary]
    next_cursor: str | None


class PlanVersionOut(BaseModel):
    version: int
    content_hash: str
    author: str
    created_at: datetime
    plan: Plan


class EventOut(BaseModel):
    """One event of ``GET /v1/tasks/{id}/stream`` (the ``data`` of an SSE frame whose ``id`` is ``seq``)."""

    task_id: str
    seq: int = Field(description="Gap-free per-task sequence number; the SSE id (resume with Last-Event-ID).")
    type: str = Field(description="The event type, also the SSE event name (domain/events.py: EventType).")
    data: dict[str, Any]
    created_at: datetime


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable error code, e.g. not_found, invalid_state, stale_plan_version.")
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorOut(BaseModel):
    """The one error shape of every failed request."""

    error: ErrorDetail


def links(task_id: str) -> dict[str, str]:
    base = f"/v1/tasks/{task_id}"
    return {
        "self": base,
        "stream": f"{base}/stream",
        "plan_versions": f"{base}/plan/versions",
        "approve": f"{base}/approve",
        "reject": f"{base}/reject",
        "revise": f"{base}/revise",
        "cancel": f"{base}/cancel",
    }
