"""Approval routes: a task's approval trail, and the approver's inbox."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request

from agent_runtime.api import schemas as s
from agent_runtime.api.auth import GuardedRoute, access, principal_of
from agent_runtime.api.deps import runtime_of
from agent_runtime.api.tasks import TASK_ID, TaskId
from agent_runtime.domain.identity import Permission
from agent_runtime.services.approvals import ApprovalQueries

router = APIRouter(tags=["approvals"], route_class=GuardedRoute)


def _queries(request: Request) -> ApprovalQueries:
    return runtime_of(request).approvals


@router.get(
    "/v1/tasks/{task_id}/approvals",
    response_model=list[s.ApprovalOut],
    summary="The task's approval trail: every decision, who made it, with which roles, on which plan hash",
    openapi_extra=access(Permission.READ),
)
async def trail(task_id: TaskId, request: Request) -> list[s.ApprovalOut]:
    task = await runtime_of(request).tasks.get(task_id, principal_of(request))
    return [
        s.ApprovalOut(
            plan_version=r.plan_version,
            decision=r.decision,
            actor=r.actor,
            actor_roles=r.actor_roles,
            content_hash=r.content_hash,
            comment=r.reason,
            created_at=r.created_at,
        )
        for r in await _queries(request).trail(task)
    ]


@router.get(
    "/v1/approvals",
    response_model=s.InboxPage,
    summary="What waits for the caller's decision in its tenant, newest first",
    openapi_extra=access(Permission.DECIDE),
)
async def inbox(
    request: Request,
    status: Literal["pending"] = "pending",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(pattern=TASK_ID, description="next_cursor of the previous page")] = None,
) -> s.InboxPage:
    items, next_cursor = await _queries(request).inbox(principal_of(request), limit=limit, cursor=cursor)
    return s.InboxPage(
        items=[
            s.InboxItemOut(
                task_id=i.task.id,
                tenant=i.task.tenant,
                submitted_by=i.task.submitted_by,
                prompt_excerpt=i.prompt_excerpt,
                plan_version=i.plan.version,
                content_hash=i.plan.content_hash,
                plan_summary=i.plan.plan.summary,
                step_count=len(i.plan.plan.steps),
                tools=i.tools,
                approvals=i.approvals,
                required=i.required,
                created_at=i.task.created_at,
                waiting_since=i.waiting_since,
                links=s.links(i.task.id),
                kind=i.kind,
                rule=(i.task.gate or {}).get("rule"),
                risk=sorted(i.risky),
                risky_tools=sorted({t for tools in i.risky.values() for t in tools}),
                estimate=i.task.estimate,
                usage=i.task.usage,
                budget=i.task.budget,
                expires_at=i.task.gate_expires_at,
                call=s.attention_out(i.call) if i.call is not None else None,
            )
            for i in items
        ],
        next_cursor=next_cursor,
    )
