"""The HTTP API's request and response bodies: plain pydantic, no FastAPI, no server stack.

The service's routes (``api/``) and the Python client (``client/``) both use these models, so a
client built from them reads and writes exactly what the server does. Importing this module loads
pydantic and the domain's plan schema only, which keeps ``agent-runtime tasks …`` quick to start.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from agent_runtime.domain.inputs import (
    NO_NUL,
    NON_BLANK,
    SESSION_ID,
    check_json,
    check_text,
    json_problem,
    whole_number,
)
from agent_runtime.domain.plan import Plan

Text = Annotated[str, StringConstraints(pattern=NO_NUL), AfterValidator(check_text)]
"""Text a database can hold: no NUL, no lone surrogate (``domain/inputs.py``)."""
NonBlankText = Annotated[str, StringConstraints(pattern=NON_BLANK), AfterValidator(check_text)]
"""Storable text with at least one character that is not white space."""
JsonObject = Annotated[
    dict[str, Any],
    AfterValidator(check_json),
    WithJsonSchema({"type": "object", "additionalProperties": True}),
]
"""Free-form JSON a database can hold and give back: finite numbers, bounded depth, storable text."""
Version = Annotated[int, Field(ge=1, le=2**31 - 1), BeforeValidator(whole_number)]
"""A plan version: a JSON integer (``3`` or ``3.0``), never a string or a boolean."""
Count = Annotated[int, Field(ge=1), BeforeValidator(whole_number)]
"""A positive count: a JSON integer (``3`` or ``3.0``), never a string or a boolean."""

PROFILE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""A profile name (as ``profiles.model.NAME``)."""
PLAN_LIMITS = {"summary": 4_000, "title": 200, "instruction": 20_000, "tool": 200, "tools": 64, "depends_on": 64}
"""Per-field limits of an edited plan (README, limits table); longer values get 422."""


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class SubmitTask(_In):
    prompt: NonBlankText = Field(description="The natural-language block to plan and execute.")
    metadata: JsonObject | None = Field(default=None, description="Free-form client data, stored as is.")
    profile: Annotated[str, StringConstraints(pattern=PROFILE_NAME)] | None = Field(
        default=None,
        description="The agent profile to run under (prompts, models, tool servers, limits); absent: the "
        "default profile. An unknown name answers 422.",
    )
    session_id: Annotated[str, StringConstraints(pattern=SESSION_ID)] | None = Field(
        default=None,
        description="Groups tasks into a session: the planner and executor see a summary of the session's "
        "earlier tasks, so a follow-up can refer to them.",
    )


ACTOR = "Optional; with authentication on it must equal the authenticated subject (which is recorded)."


class Approve(_In):
    plan_version: Version = Field(description="The plan version being approved (binding).")
    content_hash: Text | None = Field(
        default=None,
        max_length=80,
        description="The plan's content hash as shown to the approver; a different current hash answers 409.",
    )
    comment: Text | None = Field(default=None, max_length=4000, description="Recorded in the approval trail.")
    actor: Text | None = Field(default=None, max_length=200, description=ACTOR)


class Reject(_In):
    reason: Text | None = Field(default=None, max_length=4000)
    actor: Text | None = Field(default=None, max_length=200, description=ACTOR)


class Revise(_In):
    feedback: NonBlankText = Field(max_length=20_000, description="What the planner should change.")
    actor: Text | None = Field(default=None, max_length=200, description=ACTOR)


class EditPlan(_In):
    base_version: Version = Field(description="The version this edit starts from (must be current).")
    plan: Plan
    actor: Text | None = Field(default=None, max_length=200, description=ACTOR)

    @field_validator("plan")
    @classmethod
    def _storable_and_bounded(cls, plan: Plan) -> Plan:
        found = json_problem(plan.model_dump(mode="json"))
        if found is not None:
            raise ValueError(f"{found[0]}: {found[1]}")
        if len(plan.summary) > PLAN_LIMITS["summary"]:
            raise ValueError(f"summary: longer than {PLAN_LIMITS['summary']} characters")
        for i, step in enumerate(plan.steps):
            for name in ("title", "instruction"):
                if len(getattr(step, name)) > PLAN_LIMITS[name]:
                    raise ValueError(f"steps.{i}.{name}: longer than {PLAN_LIMITS[name]} characters")
            for name in ("tools", "depends_on"):
                if len(getattr(step, name)) > PLAN_LIMITS[name]:
                    raise ValueError(f"steps.{i}.{name}: more than {PLAN_LIMITS[name]} entries")
            if any(len(tool) > PLAN_LIMITS["tool"] for tool in step.tools):
                raise ValueError(f"steps.{i}.tools: a name is longer than {PLAN_LIMITS['tool']} characters")
        return plan


class Cancel(_In):
    reason: Text | None = Field(default=None, max_length=4000)


class Resolve(_In):
    model_config = ConfigDict(
        json_schema_extra={  # skip needs a stated result (the service refuses it without one)
            "if": {"properties": {"action": {"const": "skip"}}},
            "then": {"required": ["result"], "properties": {"result": {"type": "string"}}},
        }
    )

    tool_call_id: Text = Field(max_length=100)
    action: Literal["retry", "skip", "fail"]
    result: Text | None = Field(
        default=None, max_length=20_000, description="With skip: the result to record instead of running it."
    )
    actor: Text | None = Field(default=None, max_length=200, description=ACTOR)


class Retry(_In):
    actor: Text | None = Field(default=None, max_length=200, description=ACTOR)


class CallDecision(_In):
    decision: Literal["approve", "deny", "edit"]
    reason: Text | None = Field(
        default=None, max_length=4000, description="With deny: told to the model as the call's result."
    )
    tool: Text | None = Field(
        default=None, max_length=200, description="With edit: call this tool instead (the step must allow it)."
    )
    arguments: JsonObject | None = Field(
        default=None, description="With edit: the arguments to call it with (checked against its input schema)."
    )


class RaiseBudget(_In):
    """The limits to raise (at least one); those not named stay as they are."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"minProperties": 1})

    # Absent means unchanged; null is not a limit (the schema says so: integer or number only).
    input_tokens: Count = Field(default=None)  # type: ignore[assignment]
    output_tokens: Count = Field(default=None)  # type: ignore[assignment]
    cost_usd: float = Field(default=None, gt=0, allow_inf_nan=False)  # type: ignore[assignment]
    tool_calls: Count = Field(default=None)  # type: ignore[assignment]
    wall_seconds: float = Field(default=None, gt=0, allow_inf_nan=False)  # type: ignore[assignment]

    @model_validator(mode="after")
    def _names_a_limit(self) -> RaiseBudget:
        if not self.model_dump(exclude_none=True):
            raise ValueError("name at least one limit to raise")
        return self


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
    profile: str | None = Field(default=None, description="The agent profile the plan was made under and runs under")
    profile_hash: str | None = Field(default=None, description="That profile's content hash (fixed at submit)")


class AttentionOut(BaseModel):
    tool_call_id: str
    step_id: str
    tool: str
    arguments: dict[str, Any]
    kind: Literal["in_doubt", "call_gate"] = Field(
        default="in_doubt",
        description="in_doubt: resolve it (POST …/resolve); call_gate: decide it (POST …/calls/{id}/decision)",
    )
    rule: str | None = Field(default=None, description="The policy rule that gated the call")


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
    gate: dict[str, Any] | None = Field(
        default=None,
        description="What the decision the task waits for requires: kind (plan, call, budget), the policy "
        "rule, the roles that may decide, distinct approvers needed, what happens on expiry",
    )
    gate_expires_at: datetime | None = None
    usage: dict[str, float] | None = Field(
        default=None,
        description="Spent so far: input_tokens, output_tokens, cost_usd, tool_calls, wall_seconds, "
        "unpriced_calls (model calls with no price: cost_usd is then a lower bound and a cost limit counts as reached)",
    )
    budget: dict[str, float] | None = Field(default=None, description="The task's limits (absent: no limit)")
    estimate: dict[str, Any] | None = Field(default=None, description="The current plan version's estimate")
    profile: str | None = Field(default=None, description="The agent profile the task runs under")
    profile_hash: str | None = Field(default=None, description="Its content hash, as snapshotted at submit")
    session_id: str | None = None
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
    profile: str | None = None
    session_id: str | None = None


class TaskPage(BaseModel):
    items: list[TaskSummary]
    next_cursor: str | None


class SessionTaskOut(TaskSummary):
    prompt: str
    result_summary: str | None = Field(default=None, description="The result's summary, or the error's message")


class SessionPage(BaseModel):
    """``GET /v1/sessions/{id}``: the session's tasks the caller may see, newest first."""

    session_id: str
    items: list[SessionTaskOut]
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
    type: str = Field(description="The event type, also the SSE event name (domain/events/: EventType).")
    data: dict[str, Any]
    created_at: datetime


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable error code, e.g. not_found, invalid_state, stale_plan_version.")
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorOut(BaseModel):
    """The one error shape of every failed request."""

    error: ErrorDetail


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
    required: int = Field(description="Distinct approvals needed (the policy rule's, else approvals.required)")
    created_at: datetime
    waiting_since: datetime
    links: dict[str, str]
    kind: Literal["plan", "call", "in_doubt", "budget"] = Field(
        default="plan",
        description="plan: a plan version to approve; call: a tool call at a policy gate; in_doubt: an "
        "in-doubt call to resolve; budget: a task paused by its budget",
    )
    rule: str | None = Field(default=None, description="The policy rule that asked for this decision")
    risk: list[Literal["destructive", "open_world"]] = Field(
        default_factory=list, description="Risk flags of the plan's tools (unknown annotations count as risky)"
    )
    risky_tools: list[str] = Field(default_factory=list)
    estimate: dict[str, Any] | None = None
    usage: dict[str, float] | None = None
    budget: dict[str, float] | None = None
    expires_at: datetime | None = None
    call: AttentionOut | None = Field(default=None, description="kind call or in_doubt: the call to decide")


class InboxPage(BaseModel):
    items: list[InboxItemOut]
    next_cursor: str | None


class ArtifactOut(BaseModel):
    name: str
    size: int
    sha256: str
    media_type: str
    url: str


class SkippedArtifact(BaseModel):
    name: str
    reason: str


class ArtifactList(BaseModel):
    items: list[ArtifactOut]
    skipped: list[SkippedArtifact]
    """Files in ``out/`` that were not kept, and why (a size limit, a link leading out of ``out/`` …)."""


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
