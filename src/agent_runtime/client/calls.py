"""The service's routes as data: one :class:`Call` per request, shared by the sync and async clients.

A call names the method, path, body and query, and how to read a successful answer into the API's
own models (:mod:`agent_runtime.schemas`). The two clients only differ in how they send it. A
request that needs several calls is a generator of calls (:data:`Steps`), driven by either client.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import quote

from pydantic import BaseModel, TypeAdapter

from agent_runtime.client.errors import NotFound
from agent_runtime.domain.plan import Plan
from agent_runtime.schemas import PlanVersionOut, TaskOut, TaskPage

T = TypeVar("T")

Steps = Generator["Call[Any]", Any, T]
"""A multi-request operation: yields calls, receives each answer (or the raised error), returns ``T``."""


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[Any], T]
    json: Any = None
    params: Mapping[str, str | int] = field(default_factory=dict)


def _task(task_id: str, tail: str = "") -> str:
    return f"/v1/tasks/{quote(task_id, safe='')}{tail}"


def _body(**fields: Any) -> dict[str, Any]:
    """A request body without the fields left out (``None``): the server applies its defaults."""
    return {k: v for k, v in fields.items() if v is not None}


def submit(prompt: str, metadata: Mapping[str, Any] | None = None) -> Call[TaskOut]:
    body = _body(prompt=prompt, metadata=dict(metadata) if metadata is not None else None)
    return Call("POST", "/v1/tasks", TaskOut.model_validate, json=body)


def get(task_id: str) -> Call[TaskOut]:
    return Call("GET", _task(task_id), TaskOut.model_validate)


def list_tasks(status: str | None = None, limit: int | None = None, cursor: str | None = None) -> Call[TaskPage]:
    params = _body(status=status, limit=limit, cursor=cursor)
    return Call("GET", "/v1/tasks", TaskPage.model_validate, params=params)


_VERSIONS = TypeAdapter(list[PlanVersionOut])


def plan_versions(task_id: str) -> Call[list[PlanVersionOut]]:
    return Call("GET", _task(task_id, "/plan/versions"), _VERSIONS.validate_python)


def approve(task_id: str, plan_version: int) -> Call[TaskOut]:
    return Call("POST", _task(task_id, "/approve"), TaskOut.model_validate, json={"plan_version": plan_version})


def reject(task_id: str, reason: str | None = None) -> Call[TaskOut]:
    return Call("POST", _task(task_id, "/reject"), TaskOut.model_validate, json=_body(reason=reason))


def revise(task_id: str, feedback: str) -> Call[TaskOut]:
    return Call("POST", _task(task_id, "/revise"), TaskOut.model_validate, json={"feedback": feedback})


def edit_plan(task_id: str, base_version: int, plan: Plan | Mapping[str, Any]) -> Call[TaskOut]:
    body = plan.model_dump(mode="json") if isinstance(plan, Plan) else dict(plan)
    return Call(
        "PUT", _task(task_id, "/plan"), TaskOut.model_validate, json={"base_version": base_version, "plan": body}
    )


def cancel(task_id: str, reason: str | None = None) -> Call[TaskOut]:
    return Call("POST", _task(task_id, "/cancel"), TaskOut.model_validate, json=_body(reason=reason))


def resolve(
    task_id: str, tool_call_id: str, action: Literal["retry", "skip", "fail"], result: str | None = None
) -> Call[TaskOut]:
    body = _body(tool_call_id=tool_call_id, action=action, result=result)
    return Call("POST", _task(task_id, "/resolve"), TaskOut.model_validate, json=body)


def stream_path(task_id: str) -> str:
    return _task(task_id, "/stream")


# --- the approval inbox -----------------------------------------------------------------------


class PendingApproval(BaseModel):
    """A plan version waiting for the caller's decision."""

    task_id: str
    plan_version: int
    content_hash: str
    prompt_excerpt: str
    summary: str
    step_count: int
    tools: list[str]
    created_at: datetime
    proposed_at: datetime


EXCERPT = 120


def pending_approval(task: TaskOut) -> PendingApproval | None:
    """The inbox item of a task waiting for plan approval (``None`` once it no longer waits)."""
    if task.status != "awaiting_approval" or task.plan is None:
        return None
    prompt = " ".join(task.prompt.split())
    tools = sorted({tool for step in task.plan.steps for tool in step.tools})
    return PendingApproval(
        task_id=task.id,
        plan_version=task.plan.version,
        content_hash=task.plan.content_hash,
        prompt_excerpt=prompt if len(prompt) <= EXCERPT else prompt[: EXCERPT - 1] + "…",
        summary=task.plan.summary,
        step_count=len(task.plan.steps),
        tools=tools,
        created_at=task.created_at,
        proposed_at=task.plan.created_at,
    )


def approvals(limit: int = 20) -> Steps[list[PendingApproval]]:
    """What waits for the caller's approval, newest first.

    **The one place that knows where the inbox comes from.** Until the service has
    ``GET /v1/approvals`` (issue 13), it is the tasks in ``awaiting_approval`` (the list route is
    newest first), each read for its plan; a task decided in between is left out. When the route
    lands, this becomes a single call.
    """
    page = yield list_tasks(status="awaiting_approval", limit=limit)
    items: list[PendingApproval] = []
    for summary in page.items:
        try:
            task = yield get(summary.id)
        except NotFound:
            continue  # removed by retention meanwhile
        item = pending_approval(task)
        if item is not None:
            items.append(item)
    return items
