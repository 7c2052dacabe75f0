"""Read models: what the store returns. Plain frozen dataclasses, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agent_runtime.domain.plan import Plan
from agent_runtime.domain.states import StepStatus, TaskStatus, ToolCallStatus


@dataclass(frozen=True, slots=True)
class TaskRecord:
    id: str
    status: TaskStatus
    prompt: str
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    current_plan_version: int | None
    approved_plan_version: int | None
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    revision_feedback: str | None
    lease_owner: str | None
    lease_expires_at: datetime | None
    lease_epoch: int
    last_seq: int
    tenant: str = "default"
    """The submitter's tenant; every read and command is scoped to it."""
    submitted_by: str | None = None
    """The authenticated subject that submitted the task (None before migration 0005)."""
    gate: dict[str, Any] | None = None
    """What the pending decision requires (rule, roles, approvers, expiry); see ``services.gates``."""
    gate_expires_at: datetime | None = None
    usage: dict[str, Any] | None = None
    """Tokens, cost, LLM and tool calls spent so far."""
    budget: dict[str, Any] | None = None
    estimate: dict[str, Any] | None = None
    """The current plan version's estimate."""
    submitter_roles: list[str] | None = None
    """The submitter's roles when it submitted (policy rules may match them)."""
    profile: str | None = None
    """The agent profile's name (None before migration 0008: the built-in profile)."""
    profile_hash: str | None = None
    profile_content: dict[str, Any] | None = None
    """The profile as it was when the task was submitted (what its planner and executor run)."""
    session_id: str | None = None


@dataclass(frozen=True, slots=True)
class PlanVersionRecord:
    task_id: str
    version: int
    content_hash: str
    plan: Plan
    author: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class StepRecord:
    task_id: str
    plan_version: int
    step_id: str
    position: int
    status: StepStatus
    output: str | None
    error: dict[str, Any] | None
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class ToolCallRecord:
    id: str
    task_id: str
    plan_version: int
    step_id: str
    turn: int
    call_index: int
    tool_name: str
    arguments: dict[str, Any]
    status: ToolCallStatus
    result: dict[str, Any] | None
    is_error: bool
    started_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class ApprovalRecord:
    task_id: str
    plan_version: int
    decision: str
    actor: str | None
    reason: str | None
    created_at: datetime
    actor_roles: list[str] | None = None
    content_hash: str | None = None


@dataclass(frozen=True, slots=True)
class Lease:
    """Proof of ownership: every write a worker makes names the epoch it claimed with."""

    task_id: str
    owner: str
    epoch: int
    status: TaskStatus
    """The status the task had when claimed (before the claim's own transition)."""
    last_seq: int = 0
    """The task's last event sequence number when claimed."""


@dataclass(frozen=True, slots=True)
class StepUsage:
    """What one completed step of a finished task spent (the history plan estimates learn from)."""

    tools: frozenset[str]
    """The tools the step was allowed to call (its plan step's ``tools``)."""
    input_tokens: int
    output_tokens: int
    wall_seconds: float
    tool_calls: int = 0
