"""The asyncio/trio client (anyio): the same routes as :class:`~agent_runtime.client.Client`, awaited."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from typing import Any, Literal, TypeVar

import anyio
import httpx2

from agent_runtime.client import calls
from agent_runtime.client.base import DEFAULT_SERVER, ClientConfig, answer, stream_failure
from agent_runtime.client.errors import APIError, ConnectionFailed
from agent_runtime.client.resume import FINAL, SETTLED, STATUS_EVENTS, Backoff, Resume, is_terminal
from agent_runtime.domain.plan import Plan
from agent_runtime.schemas import ArtifactList, EventOut, InboxPage, PlanVersionOut, SessionPage, TaskOut, TaskPage

T = TypeVar("T")


class AsyncClient:
    """``async with AsyncClient(url) as client: task = await client.submit("…")``.

    Failed requests raise :class:`~agent_runtime.client.errors.APIError` (with the service's error
    code) or :class:`~agent_runtime.client.errors.ConnectionFailed`.
    """

    def __init__(
        self,
        server: str = DEFAULT_SERVER,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        stream_timeout: float = 60.0,
        backoff: Backoff | None = None,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = ClientConfig(server, api_key, timeout, stream_timeout, backoff)
        self._http = httpx2.AsyncClient(
            base_url=self.config.server, headers=self.config.headers, timeout=self.config.timeout, transport=transport
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def call(self, call: calls.Call[T]) -> T:
        """Send one request and read its answer (raising the service's error for a failed one)."""
        try:
            response = await self._http.request(call.method, call.path, json=call.json, params=dict(call.params))
        except httpx2.TransportError as exc:
            raise ConnectionFailed(self.config.server, str(exc) or type(exc).__name__) from exc
        return call.parse(answer(response, call.binary))

    async def run(self, steps: calls.Steps[T]) -> T:
        """Drive a multi-request operation (a generator of calls) to its result."""
        try:
            request = next(steps)
            while True:
                try:
                    result: Any = await self.call(request)
                except APIError as exc:
                    request = steps.throw(exc)
                else:
                    request = steps.send(result)
        except StopIteration as done:
            value: T = done.value
            return value

    # --- commands and queries -------------------------------------------------------------------

    async def submit(
        self,
        prompt: str,
        metadata: Mapping[str, Any] | None = None,
        *,
        profile: str | None = None,
        session_id: str | None = None,
    ) -> TaskOut:
        return await self.call(calls.submit(prompt, metadata, profile=profile, session_id=session_id))

    async def session(self, session_id: str, limit: int | None = None, cursor: str | None = None) -> SessionPage:
        return await self.call(calls.session(session_id, limit, cursor))

    async def get(self, task_id: str) -> TaskOut:
        return await self.call(calls.get(task_id))

    async def list_tasks(
        self, status: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> TaskPage:
        return await self.call(calls.list_tasks(status, limit, cursor))

    async def plan_versions(self, task_id: str) -> list[PlanVersionOut]:
        return await self.call(calls.plan_versions(task_id))

    async def approve(self, task_id: str, plan_version: int, content_hash: str | None = None) -> TaskOut:
        """Approve ``plan_version`` (binding); with ``content_hash``, only if the version's content is
        still the one with that hash (else :class:`Conflict` ``content_hash_mismatch``)."""
        return await self.call(calls.approve(task_id, plan_version, content_hash))

    async def reject(self, task_id: str, reason: str | None = None) -> TaskOut:
        return await self.call(calls.reject(task_id, reason))

    async def revise(self, task_id: str, feedback: str) -> TaskOut:
        return await self.call(calls.revise(task_id, feedback))

    async def edit_plan(self, task_id: str, base_version: int, plan: Plan | Mapping[str, Any]) -> TaskOut:
        return await self.call(calls.edit_plan(task_id, base_version, plan))

    async def cancel(self, task_id: str, reason: str | None = None) -> TaskOut:
        return await self.call(calls.cancel(task_id, reason))

    async def resolve(
        self, task_id: str, tool_call_id: str, action: Literal["retry", "skip", "fail"], result: str | None = None
    ) -> TaskOut:
        return await self.call(calls.resolve(task_id, tool_call_id, action, result))

    async def approvals(self, limit: int = 20, cursor: str | None = None) -> InboxPage:
        """What waits for the caller's decision, newest first: plan versions, gated tool calls,
        in-doubt calls, budget pauses (``next_cursor`` pages on)."""
        return await self.call(calls.approvals(limit, cursor))

    async def decide_call(
        self,
        task_id: str,
        call_id: str,
        decision: Literal["approve", "deny", "edit"],
        *,
        reason: str | None = None,
        tool: str | None = None,
        arguments: Mapping[str, Any] | None = None,
    ) -> TaskOut:
        """Decide a tool call stopped at a policy gate (an edit names new arguments and/or tool)."""
        return await self.call(
            calls.decide_call(task_id, call_id, decision, reason=reason, tool=tool, arguments=arguments)
        )

    async def retry(self, task_id: str) -> TaskOut:
        """Run a failed task again from where it failed, under the same approved plan version:
        completed steps keep their outputs; the failed step and those after it run again."""
        return await self.call(calls.retry(task_id))

    async def raise_budget(self, task_id: str, **limits: float) -> TaskOut:
        """Raise the limits of a task paused by its budget (``tool_calls=10``, ``cost_usd=2.5``, …)."""
        return await self.call(calls.raise_budget(task_id, **limits))

    async def artifacts(self, task_id: str) -> ArtifactList:
        """The files the completed task kept from its workspace's ``out/`` folder (and those it did not)."""
        return await self.call(calls.artifacts(task_id))

    async def download_artifact(self, task_id: str, name: str) -> bytes:
        """One artifact's content (see :meth:`artifacts` for its size, sha256 and media type)."""
        return await self.call(calls.download_artifact(task_id, name))

    # --- events ---------------------------------------------------------------------------------

    async def events(self, task_id: str, *, after: int = 0) -> AsyncGenerator[EventOut, None]:
        """The task's events after sequence number ``after``, live, until its final event.

        A dropped connection is re-opened with ``Last-Event-ID`` on its own: no event is lost or
        repeated. Stops after the final event, or at once if the task had already finished and
        ``after`` is past its last event. Wrap it in ``anyio.fail_after`` for a deadline.
        """
        resume = Resume(self.config.server, after, self.config.backoff)
        while True:
            resume.connecting()
            try:
                async with self._http.sse(
                    calls.stream_path(task_id), headers=resume.headers(), timeout=self.config.stream_timeout
                ) as source:
                    response = source.response
                    if response.status_code != 200:
                        await response.aread()
                        error = stream_failure(response)
                        if error is not None:
                            raise error
                        reason = f"HTTP {response.status_code}"
                    else:
                        async for sse in source:
                            event = resume.accept(sse)
                            if event is None:
                                continue
                            yield event
                            if is_terminal(event):
                                return
                        if not resume.delivered and (await self.get(task_id)).status in FINAL:
                            return  # nothing after ``after`` and nothing more to come
                        reason = "the stream ended before the task did"
            except httpx2.TransportError as exc:
                reason = str(exc) or type(exc).__name__
            await anyio.sleep(resume.dropped(reason))

    async def wait(self, task_id: str, *, until: frozenset[str] = SETTLED, timeout: float | None = None) -> TaskOut:
        """Wait until the task's status is one of ``until`` (default: waiting for a person, or
        finished; a finished task always ends the wait) and return it. ``TimeoutError`` after
        ``timeout`` seconds."""
        with anyio.fail_after(timeout):
            task = await self.get(task_id)
            if task.status in until or task.status in FINAL:
                return task
            events = self.events(task_id, after=task.last_event_seq)
            try:
                async for event in events:
                    if event.type in STATUS_EVENTS:
                        task = await self.get(task_id)
                        if task.status in until or task.status in FINAL:
                            return task
            finally:
                await events.aclose()
            return await self.get(task_id)
