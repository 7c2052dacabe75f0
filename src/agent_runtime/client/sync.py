"""The blocking client (what the CLI uses)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any, Literal, TypeVar

import httpx2

from agent_runtime.client import calls
from agent_runtime.client.base import DEFAULT_SERVER, ClientConfig, answer, stream_failure
from agent_runtime.client.errors import APIError, ConnectionFailed
from agent_runtime.client.resume import FINAL, SETTLED, STATUS_EVENTS, Backoff, Resume, is_terminal
from agent_runtime.domain.plan import Plan
from agent_runtime.schemas import ArtifactList, EventOut, InboxPage, PlanVersionOut, SessionPage, TaskOut, TaskPage

T = TypeVar("T")


class Client:
    """``Client("http://127.0.0.1:8080")``: every route of the task API, answers as typed models.

    Failed requests raise :class:`~agent_runtime.client.errors.APIError` (with the service's error
    code) or :class:`~agent_runtime.client.errors.ConnectionFailed`. Use it as a context manager, or
    call :meth:`close`.
    """

    def __init__(
        self,
        server: str = DEFAULT_SERVER,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        stream_timeout: float = 60.0,
        backoff: Backoff | None = None,
        transport: httpx2.BaseTransport | None = None,
    ) -> None:
        self.config = ClientConfig(server, api_key, timeout, stream_timeout, backoff)
        self._http = httpx2.Client(
            base_url=self.config.server, headers=self.config.headers, timeout=self.config.timeout, transport=transport
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def call(self, call: calls.Call[T]) -> T:
        """Send one request and read its answer (raising the service's error for a failed one)."""
        try:
            response = self._http.request(call.method, call.path, json=call.json, params=dict(call.params))
        except httpx2.TransportError as exc:
            raise ConnectionFailed(self.config.server, str(exc) or type(exc).__name__) from exc
        return call.parse(answer(response, call.binary))

    def run(self, steps: calls.Steps[T]) -> T:
        """Drive a multi-request operation (a generator of calls) to its result."""
        try:
            request = next(steps)
            while True:
                try:
                    result: Any = self.call(request)
                except APIError as exc:
                    request = steps.throw(exc)
                else:
                    request = steps.send(result)
        except StopIteration as done:
            value: T = done.value
            return value

    # --- commands and queries -------------------------------------------------------------------

    def submit(
        self,
        prompt: str,
        metadata: Mapping[str, Any] | None = None,
        *,
        profile: str | None = None,
        session_id: str | None = None,
    ) -> TaskOut:
        return self.call(calls.submit(prompt, metadata, profile=profile, session_id=session_id))

    def session(self, session_id: str, limit: int | None = None, cursor: str | None = None) -> SessionPage:
        return self.call(calls.session(session_id, limit, cursor))

    def get(self, task_id: str) -> TaskOut:
        return self.call(calls.get(task_id))

    def list_tasks(self, status: str | None = None, limit: int | None = None, cursor: str | None = None) -> TaskPage:
        return self.call(calls.list_tasks(status, limit, cursor))

    def plan_versions(self, task_id: str) -> list[PlanVersionOut]:
        return self.call(calls.plan_versions(task_id))

    def approve(self, task_id: str, plan_version: int, content_hash: str | None = None) -> TaskOut:
        """Approve ``plan_version`` (binding); with ``content_hash``, only if the version's content is
        still the one with that hash (else :class:`Conflict` ``content_hash_mismatch``)."""
        return self.call(calls.approve(task_id, plan_version, content_hash))

    def reject(self, task_id: str, reason: str | None = None) -> TaskOut:
        return self.call(calls.reject(task_id, reason))

    def revise(self, task_id: str, feedback: str) -> TaskOut:
        return self.call(calls.revise(task_id, feedback))

    def edit_plan(self, task_id: str, base_version: int, plan: Plan | Mapping[str, Any]) -> TaskOut:
        return self.call(calls.edit_plan(task_id, base_version, plan))

    def cancel(self, task_id: str, reason: str | None = None) -> TaskOut:
        return self.call(calls.cancel(task_id, reason))

    def resolve(
        self, task_id: str, tool_call_id: str, action: Literal["retry", "skip", "fail"], result: str | None = None
    ) -> TaskOut:
        return self.call(calls.resolve(task_id, tool_call_id, action, result))

    def approvals(self, limit: int = 20, cursor: str | None = None) -> InboxPage:
        """What waits for the caller's decision, newest first: plan versions, gated tool calls,
        in-doubt calls, budget pauses (``next_cursor`` pages on)."""
        return self.call(calls.approvals(limit, cursor))

    def decide_call(
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
        return self.call(calls.decide_call(task_id, call_id, decision, reason=reason, tool=tool, arguments=arguments))

    def retry(self, task_id: str) -> TaskOut:
        """Run a failed task again from where it failed, under the same approved plan version:
        completed steps keep their outputs; the failed step and those after it run again."""
        return self.call(calls.retry(task_id))

    def raise_budget(self, task_id: str, **limits: float) -> TaskOut:
        """Raise the limits of a task paused by its budget (``tool_calls=10``, ``cost_usd=2.5``, …)."""
        return self.call(calls.raise_budget(task_id, **limits))

    def artifacts(self, task_id: str) -> ArtifactList:
        """The files the completed task kept from its workspace's ``out/`` folder (and those it did not)."""
        return self.call(calls.artifacts(task_id))

    def download_artifact(self, task_id: str, name: str) -> bytes:
        """One artifact's content (see :meth:`artifacts` for its size, sha256 and media type)."""
        return self.call(calls.download_artifact(task_id, name))

    # --- events ---------------------------------------------------------------------------------

    def events(self, task_id: str, *, after: int = 0) -> Iterator[EventOut]:
        """The task's events after sequence number ``after``, live, until its final event.

        A dropped connection is re-opened with ``Last-Event-ID`` on its own: no event is lost or
        repeated. Stops after the final event (``task_completed``, ``task_failed``, …), or at once if
        the task had already finished and ``after`` is past its last event.
        """
        return self._events(task_id, after, None)

    def _events(self, task_id: str, after: int, deadline: float | None) -> Iterator[EventOut]:
        resume = Resume(self.config.server, after, self.config.backoff)
        while True:
            resume.connecting()
            timeout = self.config.stream_timeout
            if deadline is not None:
                timeout = httpx2.Timeout(timeout.connect, read=max(0.01, min(timeout.read or 60, _left(deadline))))
            try:
                with self._http.sse(calls.stream_path(task_id), headers=resume.headers(), timeout=timeout) as source:
                    response = source.response
                    if response.status_code != 200:
                        response.read()
                        error = stream_failure(response)
                        if error is not None:
                            raise error
                        reason = f"HTTP {response.status_code}"
                    else:
                        for sse in source:
                            event = resume.accept(sse)
                            if event is None:
                                continue
                            yield event
                            if is_terminal(event):
                                return
                        if not resume.delivered and self.get(task_id).status in FINAL:
                            return  # nothing after ``after`` and nothing more to come
                        reason = "the stream ended before the task did"
            except httpx2.TransportError as exc:
                reason = str(exc) or type(exc).__name__
            if deadline is not None and _left(deadline) <= 0:
                raise TimeoutError(f"no final event from task {task_id} in time")
            time.sleep(resume.dropped(reason))

    def wait(self, task_id: str, *, until: frozenset[str] = SETTLED, timeout: float | None = None) -> TaskOut:
        """Block until the task's status is one of ``until`` (default: waiting for a person, or
        finished; a finished task always ends the wait) and return it.

        Follows the event stream from the task's current position and reads the task after each
        event that changes its status. Raises ``TimeoutError`` after ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        task = self.get(task_id)
        if task.status in until or task.status in FINAL:
            return task
        for event in self._events(task_id, task.last_event_seq, deadline):
            if event.type in STATUS_EVENTS:
                task = self.get(task_id)
                if task.status in until or task.status in FINAL:
                    return task
            if deadline is not None and _left(deadline) <= 0:
                raise TimeoutError(f"task {task_id} is still {task.status} after {timeout} s")
        return self.get(task_id)


def _left(deadline: float) -> float:
    return deadline - time.monotonic()
