"""Sessions: the tasks a client grouped under one ``session_id``, and their summary for follow-ups.

A session is not a stored object: it is the tasks that name it. ``GET /v1/sessions/{id}`` lists
those the caller may see (its tenant's; a submitter only its own), newest first; none visible is
the 404 of a missing session. The summary a new task's planner and executor see covers only the
earlier tasks of the same session, tenant and submitter, so a session never shows one submitter's
requests to another's task.
"""

from __future__ import annotations

from agent_runtime.agents.sessions import EarlierTask, summarize
from agent_runtime.domain.identity import Permission, Principal
from agent_runtime.domain.records import TaskRecord
from agent_runtime.errors import NotFoundError
from agent_runtime.services.access import allowed
from agent_runtime.settings import SessionSettings
from agent_runtime.store.store import TaskStore


class Sessions:
    def __init__(self, store: TaskStore, settings: SessionSettings) -> None:
        self.store = store
        self.settings = settings

    async def tasks(
        self, session_id: str, principal: Principal | None, *, limit: int, cursor: str | None
    ) -> tuple[list[TaskRecord], str | None]:
        """The session's tasks ``principal`` may see, newest first (404 when it sees none)."""
        who = allowed(principal, Permission.READ)
        own_only = not who.sees(who.tenant, None)
        found, next_cursor = await self.store.list_tasks(
            status=None,
            limit=limit,
            cursor=cursor,
            tenant=who.tenant if who.authenticated else None,
            submitted_by=who.subject if own_only else None,
            session_id=session_id,
        )
        if not found and cursor is None:
            raise NotFoundError(f"session {session_id} not found", details={"session_id": session_id})
        return found, next_cursor

    async def summary(self, task: TaskRecord) -> str | None:
        """The summary of the session's tasks submitted before ``task`` (same tenant and submitter),
        within ``sessions.summary_max_tokens``; None without a session or earlier tasks."""
        if task.session_id is None or self.settings.summary_max_tokens <= 0 or self.settings.summary_max_tasks <= 0:
            return None
        earlier, _ = await self.store.list_tasks(
            status=None,
            limit=self.settings.summary_max_tasks,
            cursor=task.id,  # ids are time-ordered: older than this task
            tenant=task.tenant,
            submitted_by=task.submitted_by,
            session_id=task.session_id,
        )
        if task.submitted_by is None:  # a task without a recorded submitter sees only the like
            earlier = [e for e in earlier if e.submitted_by is None]
        return summarize([await self._earlier(e) for e in earlier], self.settings.summary_max_tokens)

    async def _earlier(self, task: TaskRecord) -> EarlierTask:
        version = task.approved_plan_version or task.current_plan_version
        plan = (await self.store.plan_version(task.id, version)).plan.summary if version else None
        result = None
        if task.result is not None:
            result = str(task.result.get("summary") or "")
        elif task.error is not None:
            result = str(task.error.get("message") or task.error.get("code") or "")
        return EarlierTask(task.id, task.status.value, task.prompt, plan, result or None)
