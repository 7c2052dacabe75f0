"""``GET /v1/sessions/{session_id}``: the tasks of a session that the caller may see."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from agent_runtime.api import schemas as s
from agent_runtime.api.auth import GuardedRoute, access, principal_of
from agent_runtime.api.deps import runtime_of
from agent_runtime.api.tasks import TASK_ID
from agent_runtime.domain.identity import Permission
from agent_runtime.domain.inputs import SESSION_ID

router = APIRouter(prefix="/v1/sessions", tags=["sessions"], route_class=GuardedRoute)

SessionId = Annotated[str, Path(pattern=SESSION_ID, description="The session id the tasks were submitted with")]


@router.get(
    "/{session_id}",
    response_model=s.SessionPage,
    summary="The session's tasks the caller may see, newest first (404 when none)",
    openapi_extra=access(Permission.READ),
)
async def get_session(
    session_id: SessionId,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(pattern=TASK_ID, description="next_cursor of the previous page")] = None,
) -> s.SessionPage:
    found, next_cursor = await runtime_of(request).sessions.tasks(
        session_id, principal_of(request), limit=limit, cursor=cursor
    )
    return s.SessionPage(session_id=session_id, items=[s.session_task_out(t) for t in found], next_cursor=next_cursor)
