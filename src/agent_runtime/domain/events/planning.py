"""Events of a task's way to an approved plan: created, planned, edited, revised, approved or rejected."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from agent_runtime.domain.events.base import EventRecord
from agent_runtime.domain.plan import Plan
from agent_runtime.domain.states import TaskStatus


class TaskCreated(EventRecord):
    """A task was submitted."""

    type: Literal["task_created"] = "task_created"
    status: TaskStatus


class PlanningStarted(EventRecord):
    """A worker started planning (``revision``: the operator asked for a revised plan)."""

    type: Literal["planning_started"] = "planning_started"
    revision: bool


class PlanInvalid(EventRecord):
    """The model's plan failed the checks (it gets one repair attempt)."""

    type: Literal["plan_invalid"] = "plan_invalid"
    problems: list[str]


class PlanProposed(EventRecord):
    """A plan version was stored."""

    type: Literal["plan_proposed"] = "plan_proposed"
    plan_version: int
    content_hash: str
    author: str
    offline_test: bool
    attempts: int
    plan: Plan
    estimate: PlanEstimate | None = None
    profile: str | None = None
    """The agent profile the plan was made under (and the executor will run under)."""
    profile_hash: str | None = None
    """That profile's content hash, as the task snapshotted it at submit."""


class PlanEstimate(BaseModel):
    """What a plan version is expected to cost (see ``policy.estimate``)."""

    model_config = ConfigDict(extra="forbid")
    input_tokens: int
    output_tokens: int
    cost_usd: float | None = Field(description="None when a model's price is unknown")
    wall_seconds: float
    tool_calls: int
    basis: str = Field(description="How it was estimated: from the history of similar steps, or the heuristic")


class ApprovalRequired(EventRecord):
    """The current plan version waits for approval (after ``plan_proposed`` and ``plan_edited``)."""

    type: Literal["approval_required"] = "approval_required"
    plan_version: int
    rule: str | None = Field(default=None, description="The policy rule that asked for approval (None: the default)")
    roles: list[str] = Field(default_factory=list, description="Roles that may approve (empty: any approver)")
    required: int = Field(default=1, description="Distinct approvers needed")
    expires_at: datetime | None = None
    on_expiry: Literal["reject", "cancel", "approve"] | None = None
    passed_over: list[str] = Field(
        default_factory=list,
        description="auto_approve rules that matched this plan and why they did not approve it (risky tools)",
    )


class PlanEdited(EventRecord):
    """An operator replaced the plan (``PUT …/plan``)."""

    type: Literal["plan_edited"] = "plan_edited"
    plan_version: int
    based_on: int
    content_hash: str
    actor: str | None
    estimate: PlanEstimate | None = Field(default=None, description="The edited version's estimate")


class RevisionRequested(EventRecord):
    """An operator asked for a revised plan (``POST …/revise``)."""

    type: Literal["revision_requested"] = "revision_requested"
    plan_version: int
    feedback: str
    actor: str | None


class TaskApproved(EventRecord):
    """A plan version was approved (``POST …/approve``)."""

    type: Literal["task_approved"] = "task_approved"
    plan_version: int
    actor: str | None
    content_hash: str
    approvers: list[str] = Field(description="Every distinct approver of this version and hash")


class ApprovalRecorded(EventRecord):
    """One of ``approvals.required`` distinct approvals of a plan version; the task still waits."""

    type: Literal["approval_recorded"] = "approval_recorded"
    plan_version: int
    actor: str | None
    content_hash: str
    approvals: int
    required: int


class ApprovalsDiscarded(EventRecord):
    """A new plan version (edit or revision) replaced one that had partial approvals; they no longer count."""

    type: Literal["approvals_discarded"] = "approvals_discarded"
    plan_version: int
    approvers: list[str]


class TaskRejected(EventRecord):
    """The plan was rejected (``POST …/reject``); final."""

    type: Literal["task_rejected"] = "task_rejected"
    plan_version: int
    reason: str | None
    actor: str | None
