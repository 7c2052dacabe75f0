"""Task routes: submit, read, list, plan versions, and the operator's decisions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from agent_runtime.api import schemas as s
from agent_runtime.api.deps import RuntimeDep, TasksDep
from agent_runtime.domain.states import TaskStatus

router = APIRouter(prefix="/v1/tasks", tags=["tasks"])


async def _out(tasks: TasksDep, task_id: str) -> s.TaskOut:
    return s.task_out(await tasks.view(task_id))


@router.post("", status_code=202, response_model=s.TaskOut, summary="Submit a task")
async def submit(body: s.SubmitTask, tasks: TasksDep, response: Response) -> s.TaskOut:
    task = await tasks.submit(body.prompt, body.metadata)
    response.headers["Location"] = f"/v1/tasks/{task.id}"
    return await _out(tasks, task.id)


@router.get("", response_model=s.TaskPage, summary="List tasks, newest first")
async def list_tasks(
    runtime: RuntimeDep,
    status: TaskStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> s.TaskPage:
    found, next_cursor = await runtime.store.list_tasks(status=status, limit=limit, cursor=cursor)
    items = [
        s.TaskSummary(
            id=t.id,
            status=t.status.value,
            created_at=t.created_at,
            updated_at=t.updated_at,
            current_plan_version=t.current_plan_version,
            links=s.links(t.id),
        )
        for t in found
    ]
    return s.TaskPage(items=items, next_cursor=next_cursor)


@router.get("/{task_id}", response_model=s.TaskOut, summary="A task with its current plan and step statuses")
async def get_task(task_id: str, tasks: TasksDep) -> s.TaskOut:
    return await _out(tasks, task_id)


@router.get("/{task_id}/plan/versions", response_model=list[s.PlanVersionOut], summary="Every plan version")
async def plan_versions(task_id: str, runtime: RuntimeDep) -> list[s.PlanVersionOut]:
    await runtime.store.get_task(task_id)
    return [
        s.PlanVersionOut(
            version=v.version, content_hash=v.content_hash, author=v.author, created_at=v.created_at, plan=v.plan
        )
        for v in await runtime.store.plan_versions(task_id)
    ]


@router.post("/{task_id}/approve", response_model=s.TaskOut, summary="Approve a plan version (binding)")
async def approve(task_id: str, body: s.Approve, tasks: TasksDep, response: Response) -> s.TaskOut:
    _, created = await tasks.approve(task_id, body.plan_version, body.actor)
    response.status_code = 202 if created else 200
    return await _out(tasks, task_id)


@router.post("/{task_id}/reject", response_model=s.TaskOut, summary="Reject the proposed plan")
async def reject(task_id: str, body: s.Reject, tasks: TasksDep) -> s.TaskOut:
    await tasks.reject(task_id, body.reason, body.actor)
    return await _out(tasks, task_id)


@router.post("/{task_id}/revise", response_model=s.TaskOut, status_code=202, summary="Ask the planner for a revision")
async def revise(task_id: str, body: s.Revise, tasks: TasksDep) -> s.TaskOut:
    await tasks.request_revision(task_id, body.feedback, body.actor)
    return await _out(tasks, task_id)


@router.put("/{task_id}/plan", response_model=s.TaskOut, summary="Replace the plan with an edited version")
async def edit_plan(task_id: str, body: s.EditPlan, tasks: TasksDep) -> s.TaskOut:
    await tasks.edit_plan(task_id, body.base_version, body.plan, body.actor)
    return await _out(tasks, task_id)


@router.post("/{task_id}/cancel", response_model=s.TaskOut, summary="Cancel, stopping LLM and tool calls in flight")
async def cancel(task_id: str, tasks: TasksDep, body: s.Cancel | None = None) -> s.TaskOut:
    await tasks.cancel(task_id, body.reason if body else None)
    return await _out(tasks, task_id)


@router.post("/{task_id}/resolve", response_model=s.TaskOut, summary="Decide an in-doubt tool call")
async def resolve(task_id: str, body: s.Resolve, tasks: TasksDep) -> s.TaskOut:
    await tasks.resolve_attention(task_id, body.tool_call_id, body.action, body.result, body.actor)
    return await _out(tasks, task_id)
