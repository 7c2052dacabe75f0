"""The service's routes as data: one :class:`Call` per request, shared by the sync and async clients.

A call names the method, path, body and query, and how to read a successful answer into the API's
own models (:mod:`agent_runtime.schemas`). The two clients only differ in how they send it. A
request that needs several calls is a generator of calls (:data:`Steps`), driven by either client.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import quote

from pydantic import TypeAdapter

from agent_runtime.domain.plan import Plan
from agent_runtime.schemas import ArtifactList, InboxPage, PlanVersionOut, SessionPage, TaskOut, TaskPage

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
    binary: bool = False
    """The answer is a file: ``parse`` gets its bytes, not JSON."""


def _task(task_id: str, tail: str = "") -> str:
    return f"/v1/tasks/{quote(task_id, safe='')}{tail}"


def _body(**fields: Any) -> dict[str, Any]:
    """A request body without the fields left out (``None``): the server applies its defaults."""
    return {k: v for k, v in fields.items() if v is not None}


def submit(
    prompt: str,
    metadata: Mapping[str, Any] | None = None,
    *,
    profile: str | None = None,
    session_id: str | None = None,
) -> Call[TaskOut]:
    """``profile``: the agent profile to run under (absent: the default); ``session_id``: the
    session whose earlier tasks the planner and executor see."""
    meta = dict(metadata) if metadata is not None else None
    body = _body(prompt=prompt, metadata=meta, profile=profile, session_id=session_id)
    return Call("POST", "/v1/tasks", TaskOut.model_validate, json=body)


def get(task_id: str) -> Call[TaskOut]:
    return Call("GET", _task(task_id), TaskOut.model_validate)


def list_tasks(status: str | None = None, limit: int | None = None, cursor: str | None = None) -> Call[TaskPage]:
    params = _body(status=status, limit=limit, cursor=cursor)
    return Call("GET", "/v1/tasks", TaskPage.model_validate, params=params)


def session(session_id: str, limit: int | None = None, cursor: str | None = None) -> Call[SessionPage]:
    """The session's tasks the caller may see, newest first (``GET /v1/sessions/{id}``)."""
    params = _body(limit=limit, cursor=cursor)
    return Call("GET", f"/v1/sessions/{quote(session_id, safe='')}", SessionPage.model_validate, params=params)


_VERSIONS = TypeAdapter(list[PlanVersionOut])


def plan_versions(task_id: str) -> Call[list[PlanVersionOut]]:
    return Call("GET", _task(task_id, "/plan/versions"), _VERSIONS.validate_python)


def approve(task_id: str, plan_version: int, content_hash: str | None = None) -> Call[TaskOut]:
    """Approve ``plan_version``; with ``content_hash`` (as shown to the approver) the service also
    refuses (409 ``content_hash_mismatch``) a version whose content is not the one shown."""
    body = _body(plan_version=plan_version, content_hash=content_hash)
    return Call("POST", _task(task_id, "/approve"), TaskOut.model_validate, json=body)


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


def retry(task_id: str) -> Call[TaskOut]:
    """Run a failed task again from where it failed (``POST …/retry``)."""
    return Call("POST", _task(task_id, "/retry"), TaskOut.model_validate)


def stream_path(task_id: str) -> str:
    return _task(task_id, "/stream")


# --- the approval inbox -----------------------------------------------------------------------


def approvals(limit: int = 20, cursor: str | None = None) -> Call[InboxPage]:
    """What waits for the caller's decision in its tenant, newest first (``GET /v1/approvals``):
    plan versions to approve, tool calls at a policy gate, in-doubt calls, budget pauses."""
    return Call("GET", "/v1/approvals", InboxPage.model_validate, params=_body(limit=limit, cursor=cursor))


def decide_call(
    task_id: str,
    call_id: str,
    decision: Literal["approve", "deny", "edit"],
    *,
    reason: str | None = None,
    tool: str | None = None,
    arguments: Mapping[str, Any] | None = None,
) -> Call[TaskOut]:
    body = _body(decision=decision, reason=reason, tool=tool, arguments=dict(arguments) if arguments else None)
    return Call("POST", _task(task_id, f"/calls/{quote(call_id, safe='')}/decision"), TaskOut.model_validate, json=body)


def raise_budget(task_id: str, **limits: float) -> Call[TaskOut]:
    return Call("POST", _task(task_id, "/budget"), TaskOut.model_validate, json=_body(**limits))


def artifacts(task_id: str) -> Call[ArtifactList]:
    return Call("GET", _task(task_id, "/artifacts"), ArtifactList.model_validate)


def _bytes(content: Any) -> bytes:
    if not isinstance(content, bytes):
        raise TypeError(f"a download is read as bytes, not {type(content).__name__}")
    return content


def download_artifact(task_id: str, name: str) -> Call[bytes]:
    return Call("GET", _task(task_id, f"/artifacts/{quote(name, safe='')}"), _bytes, binary=True)
