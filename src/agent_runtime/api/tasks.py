"""Task routes: submit, read, list, plan versions, and the operator's decisions.

A command answers with the task as its own transaction left it (the record the store returns), not
with a second read of the task row: one store read fewer per command, and the answer is the state the
command produced rather than whatever a worker made of it since. The plan and step statuses are read
after the command, as ``GET /v1/tasks/{id}`` reads them.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from agent_runtime.api import schemas as s
from agent_runtime.api.auth import GuardedRoute, access, acting, principal_of
from agent_runtime.api.deps import runtime_of, tasks_of
from agent_runtime.domain.identity import Permission
from agent_runtime.domain.records import TaskRecord
from agent_runtime.domain.states import TaskStatus
from agent_runtime.services.tasks import TaskService

router = APIRouter(prefix="/v1/tasks", tags=["tasks"], route_class=GuardedRoute)
READ = access(Permission.READ)
DECIDE = access(Permission.DECIDE)

TASK_ID = r"^task_[0-9a-f]{24}$"
TaskId = Annotated[str, Path(pattern=TASK_ID, description="The task's id, e.g. task_01a1fd15c782e60a23f0fe13")]
"""A task id in a path: anything else is a 422 naming ``task_id`` (never reaches the store)."""


async def _answer(tasks: TaskService, task: TaskRecord) -> s.TaskOut:
    """``task`` as a command returned it (no second read of the row), with its plan and steps."""
    return s.task_out(await tasks.view_of(task))


@router.post(
    "", status_code=202, response_model=s.TaskOut, summary="Submit a task", openapi_extra=access(Permission.SUBMIT)
)
async def submit(body: s.SubmitTask, request: Request, response: Response) -> s.TaskOut:
    tasks = tasks_of(request)
    task = await tasks.submit(
        body.prompt, body.metadata, principal=principal_of(request), profile=body.profile, session_id=body.session_id
    )
    response.headers["Location"] = f"/v1/tasks/{task.id}"
    return await _answer(tasks, task)


@router.get("", response_model=s.TaskPage, summary="List tasks, newest first", openapi_extra=READ)
async def list_tasks(
    request: Request,
    status: TaskStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(pattern=TASK_ID, description="next_cursor of the previous page")] = None,
) -> s.TaskPage:
    found, next_cursor = await tasks_of(request).list_tasks(
        principal_of(request), status=status, limit=limit, cursor=cursor
    )
    return s.TaskPage(items=[s.summary_out(t) for t in found], next_cursor=next_cursor)


@router.get(
    "/{task_id}", response_model=s.TaskOut, summary="A task with its current plan and step statuses", openapi_extra=READ
)
async def get_task(task_id: TaskId, request: Request) -> s.TaskOut:
    return s.task_out(await tasks_of(request).view(task_id, principal_of(request)))


@router.get(
    "/{task_id}/plan/versions", response_model=list[s.PlanVersionOut], summary="Every plan version", openapi_extra=READ
)
async def plan_versions(task_id: TaskId, request: Request) -> list[s.PlanVersionOut]:
    return [
        s.PlanVersionOut(
            version=v.version, content_hash=v.content_hash, author=v.author, created_at=v.created_at, plan=v.plan
        )
        for v in await tasks_of(request).plan_versions(task_id, principal_of(request))
    ]


@router.post(
    "/{task_id}/approve", response_model=s.TaskOut, summary="Approve a plan version (binding)", openapi_extra=DECIDE
)
async def approve(task_id: TaskId, body: s.Approve, request: Request, response: Response) -> s.TaskOut:
    tasks = tasks_of(request)
    task, created = await tasks.approve(
        task_id,
        body.plan_version,
        principal=acting(request, body.actor),
        content_hash=body.content_hash,
        comment=body.comment,
    )
    response.status_code = 202 if created else 200
    return await _answer(tasks, task)


@router.post("/{task_id}/reject", response_model=s.TaskOut, summary="Reject the proposed plan", openapi_extra=DECIDE)
async def reject(task_id: TaskId, body: s.Reject, request: Request) -> s.TaskOut:
    tasks = tasks_of(request)
    return await _answer(tasks, await tasks.reject(task_id, body.reason, principal=acting(request, body.actor)))


@router.post(
    "/{task_id}/revise",
    response_model=s.TaskOut,
    status_code=202,
    summary="Ask the planner for a revision",
    openapi_extra=DECIDE,
)
async def revise(task_id: TaskId, body: s.Revise, request: Request) -> s.TaskOut:
    tasks = tasks_of(request)
    return await _answer(
        tasks, await tasks.request_revision(task_id, body.feedback, principal=acting(request, body.actor))
    )


@router.put(
    "/{task_id}/plan", response_model=s.TaskOut, summary="Replace the plan with an edited version", openapi_extra=DECIDE
)
async def edit_plan(task_id: TaskId, body: s.EditPlan, request: Request) -> s.TaskOut:
    tasks = tasks_of(request)
    return await _answer(
        tasks, await tasks.edit_plan(task_id, body.base_version, body.plan, principal=acting(request, body.actor))
    )


@router.post(
    "/{task_id}/cancel",
    response_model=s.TaskOut,
    summary="Cancel, stopping LLM and tool calls in flight",
    openapi_extra=access(Permission.CANCEL),
)
async def cancel(task_id: TaskId, request: Request, body: s.Cancel | None = None) -> s.TaskOut:
    tasks = tasks_of(request)
    return await _answer(
        tasks, await tasks.cancel(task_id, body.reason if body else None, principal=principal_of(request))
    )


@router.post(
    "/{task_id}/resolve", response_model=s.TaskOut, summary="Decide an in-doubt tool call", openapi_extra=DECIDE
)
async def resolve(task_id: TaskId, body: s.Resolve, request: Request) -> s.TaskOut:
    gates = runtime_of(request).gates
    task = await gates.resolve_attention(
        task_id, body.tool_call_id, body.action, body.result, principal=acting(request, body.actor)
    )
    return await _answer(tasks_of(request), task)


@router.post(
    "/{task_id}/retry",
    response_model=s.TaskOut,
    summary="Run a failed task again from where it failed, under the same approved plan version",
    openapi_extra=DECIDE,
)
async def retry(task_id: TaskId, request: Request, body: s.Retry | None = None) -> s.TaskOut:
    task = await runtime_of(request).gates.retry(task_id, principal=acting(request, body.actor if body else None))
    return await _answer(tasks_of(request), task)


CALL_ID = r"^call_[0-9a-f]{24}$"
CallId = Annotated[str, Path(pattern=CALL_ID, description="The gated tool call's id")]


@router.post(
    "/{task_id}/calls/{call_id}/decision",
    response_model=s.TaskOut,
    summary="Decide a tool call stopped at a policy gate: approve, deny (the model is told) or edit it",
    openapi_extra=DECIDE,
)
async def decide_call(task_id: TaskId, call_id: CallId, body: s.CallDecision, request: Request) -> s.TaskOut:
    gates = runtime_of(request).gates
    task = await gates.decide_call(
        task_id,
        call_id,
        body.decision,
        reason=body.reason,
        tool=body.tool,
        arguments=body.arguments,
        principal=principal_of(request),
    )
    return await _answer(tasks_of(request), task)


@router.post(
    "/{task_id}/budget",
    response_model=s.TaskOut,
    summary="Raise the budget of a task paused by budget_exceeded; it resumes",
    openapi_extra=DECIDE,
)
async def raise_budget(task_id: TaskId, body: s.RaiseBudget, request: Request) -> s.TaskOut:
    budget = {k: float(v) for k, v in body.model_dump(exclude_none=True).items()}
    task = await runtime_of(request).gates.raise_budget(task_id, budget, principal=principal_of(request))
    return await _answer(tasks_of(request), task)
