"""From the service's records to the API's bodies.

The bodies themselves are plain pydantic models in :mod:`agent_runtime.schemas`, shared with the
Python client; they are re-exported here so the routes name them as ``schemas.TaskOut`` etc.
"""

from __future__ import annotations

from agent_runtime.domain.records import PlanVersionRecord, StepRecord, TaskRecord, ToolCallRecord
from agent_runtime.domain.states import ToolCallStatus
from agent_runtime.schemas import ApprovalOut as ApprovalOut
from agent_runtime.schemas import Approve as Approve
from agent_runtime.schemas import AttentionOut as AttentionOut
from agent_runtime.schemas import CallDecision as CallDecision
from agent_runtime.schemas import Cancel as Cancel
from agent_runtime.schemas import EditPlan as EditPlan
from agent_runtime.schemas import InboxItemOut as InboxItemOut
from agent_runtime.schemas import InboxPage as InboxPage
from agent_runtime.schemas import PlanOut as PlanOut
from agent_runtime.schemas import PlanVersionOut as PlanVersionOut
from agent_runtime.schemas import RaiseBudget as RaiseBudget
from agent_runtime.schemas import Reject as Reject
from agent_runtime.schemas import Resolve as Resolve
from agent_runtime.schemas import Retry as Retry
from agent_runtime.schemas import Revise as Revise
from agent_runtime.schemas import SessionPage as SessionPage
from agent_runtime.schemas import SessionTaskOut as SessionTaskOut
from agent_runtime.schemas import StepOut as StepOut
from agent_runtime.schemas import SubmitTask as SubmitTask
from agent_runtime.schemas import TaskOut as TaskOut
from agent_runtime.schemas import TaskPage as TaskPage
from agent_runtime.schemas import TaskSummary as TaskSummary
from agent_runtime.schemas import links as links
from agent_runtime.services.tasks import TaskView


def plan_out(plan: PlanVersionRecord, steps: list[StepRecord], task: TaskRecord | None = None) -> PlanOut:
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
        profile=task.profile if task is not None else None,
        profile_hash=task.profile_hash if task is not None else None,
    )


def attention_out(call: ToolCallRecord) -> AttentionOut:
    gated = call.status == ToolCallStatus.AWAITING_DECISION
    return AttentionOut(
        tool_call_id=call.id,
        step_id=call.step_id,
        tool=call.tool_name,
        arguments=call.arguments,
        kind="call_gate" if gated else "in_doubt",
        rule=((call.result or {}).get("gate") or {}).get("rule") if gated else None,
    )


def summary_out(t: TaskRecord) -> TaskSummary:
    return TaskSummary(
        id=t.id,
        status=t.status.value,
        tenant=t.tenant,
        submitted_by=t.submitted_by,
        created_at=t.created_at,
        updated_at=t.updated_at,
        current_plan_version=t.current_plan_version,
        links=links(t.id),
        profile=t.profile,
        session_id=t.session_id,
    )


def session_task_out(t: TaskRecord) -> SessionTaskOut:
    result = (t.result or {}).get("summary") or (t.error or {}).get("message")
    return SessionTaskOut(**summary_out(t).model_dump(), prompt=t.prompt, result_summary=result)


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
        plan=plan_out(view.plan, view.steps, t) if view.plan else None,
        result=t.result,
        error=t.error,
        needs_attention=[attention_out(c) for c in view.attention],
        gate=t.gate,
        gate_expires_at=t.gate_expires_at,
        usage=t.usage,
        budget=t.budget,
        estimate=t.estimate,
        profile=t.profile,
        profile_hash=t.profile_hash,
        session_id=t.session_id,
        last_event_seq=t.last_seq,
        links=links(t.id),
    )
