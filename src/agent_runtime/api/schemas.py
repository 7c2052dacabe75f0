"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agent_runtime.domain.plan import Plan
from agent_runtime.domain.records import PlanVersionRecord, StepRecord, ToolCallRecord
from agent_runtime.services.tasks import TaskView


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SubmitTask(_In):
    prompt: str = Field(min_length=1, description="The natural-language block to plan and execute.")
    metadata: dict[str, Any] | None = Field(default=None, description="Free-form client data, stored as is.")


ACTOR = "Optional; with authentication on it must equal the authenticated subject (which is recorded)."


class Approve(_In):
    plan_version: int = Field(ge=1, description="The plan version being approved (binding).")
    content_hash: str | None = Field(
        default=None,
        max_length=80,
        description="The plan's content hash as shown to the approver; a different current hash answers 409.",
    )
    comment: str | None = Field(default=None, max_length=4000, description="Recorded in the approval trail.")
    actor: str | None = Field(default=None, max_length=200, description=ACTOR)


class Reject(_In):
    reason: str | None = Field(default=None, max_length=4000)
    actor: str | None = Field(default=None, max_length=200, description=ACTOR)


class Revise(_In):
    feedback: str = Field(min_length=1, max_length=20_000, description="What the planner should change.")
    actor: str | None = Field(default=None, max_length=200, description=ACTOR)


class EditPlan(_In):
    base_version: int = Field(ge=1, description="The version this edit starts from (must be current).")
    plan: Plan
    actor: str | None = Field(default=None, max_length=200, description=ACTOR)


class Cancel(_In):
    reason: str | None = Field(default=None, max_length=4000)


class Resolve(_In):
    tool_call_id: str
    action: Literal["retry", "skip", "fail"]
    result: str | None = Field(default=None, description="With skip: the result to record instead of running it.")
    actor: str | None = Field(default=None, max_length=200, description=ACTOR)


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
    tenant: str
    submitted_by: str | None
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
    tenant: str
    submitted_by: str | None
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


class ApprovalOut(BaseModel):
    plan_version: int
    decision: str = Field(description="approved, rejected, revision_requested or edited")
    actor: str | None = Field(description="The authenticated subject that decided")
    actor_roles: list[str] | None
    content_hash: str | None = Field(description="The plan content hash the approval named")
    comment: str | None = Field(description="The approval's comment, the rejection reason or the revision feedback")
    created_at: datetime


class InboxItemOut(BaseModel):
    task_id: str
    tenant: str
    submitted_by: str | None
    prompt_excerpt: str
    plan_version: int
    content_hash: str
    plan_summary: str
    step_count: int
    tools: list[str]
    approvals: int = Field(description="Distinct approvals of this version so far")
    required: int = Field(description="Distinct approvals needed (approvals.required)")
    created_at: datetime
    waiting_since: datetime
    links: dict[str, str]


class InboxPage(BaseModel):
    items: list[InboxItemOut]
    next_cursor: str | None


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
        "approvals": f"{base}/approvals",
    }


def plan_out(plan: PlanVersionRecord, steps: list[StepRecord]) -> PlanOut:
    by_id = {s.step_id: s for s in steps}
    out = []
    for step in plan.plan.steps:
        rec = by_id.get(step.id)
        out.append(
            StepOut(
                **step.model_dump(),
                status=rec.status.value if rec else "pending",
                output=rec.output if rec else None,
                error=rec.error if rec else None,
                started_at=rec.started_at if rec else None,
                finished_at=rec.finished_at if rec else None,
            )
        )
    return PlanOut(
        version=plan.version,
        content_hash=plan.content_hash,
        author=plan.author,
        created_at=plan.created_at,
        summary=plan.plan.summary,
        steps=out,
    )


def attention_out(call: ToolCallRecord) -> AttentionOut:
    return AttentionOut(tool_call_id=call.id, step_id=call.step_id, tool=call.tool_name, arguments=call.arguments)


def task_out(view: TaskView) -> TaskOut:
    t = view.task
    return TaskOut(
        id=t.id,
        status=t.status.value,
        tenant=t.tenant,
        submitted_by=t.submitted_by,
        prompt=t.prompt,
        metadata=t.metadata,
        created_at=t.created_at,
        updated_at=t.updated_at,
        current_plan_version=t.current_plan_version,
        approved_plan_version=t.approved_plan_version,
        plan=plan_out(view.plan, view.steps) if view.plan else None,
        result=t.result,
        error=t.error,
        needs_attention=[attention_out(c) for c in view.attention],
        last_event_seq=t.last_seq,
        links=links(t.id),
    )
