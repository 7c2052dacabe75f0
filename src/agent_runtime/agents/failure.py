"""Failure policies: what happens when a step fails, per plan or per step (``on_failure``).

* ``fail`` (the default): the task fails, as it always did.
* ``retry``: the step runs again from the start of its conversation after a backoff, up to
  ``attempts`` runs in all; then the task fails. The wait is durable: ``step_retrying`` records
  the attempt and the time of the next one, and a worker that takes over after a crash reads them
  back (:func:`prior_attempts`), so it neither resets the count nor cuts the wait short. A
  completed call of a failed attempt is never made again (the new attempt is a new conversation;
  takeover replays only the current attempt's calls).
* ``skip``: the step is recorded ``skipped`` with its error; the steps that depend on it still run,
  and see, as its result, a note that it was skipped and why.
* ``replan``: :class:`ReplanRequested` ends the run; the job sends the task back to the planner
  for the steps not yet completed (``services/recovery.py``, ``agents/replan.py``).

A pause (a call in doubt, a policy gate, the budget) is not a failure and passes through.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from agent_runtime.agents.execution import PAUSES, StopSignal
from agent_runtime.domain.events import Event
from agent_runtime.domain.plan import Plan, PlanStep
from agent_runtime.errors import ErrorCode, LeaseLostError, ServiceError

Attempt = Callable[[bool], Awaitable[str]]
"""``attempt(resumed)``: run the step once (resuming its recorded calls when ``resumed``)."""
Clock = Callable[[], datetime]

RESETS = frozenset({"task_retried", "replan_requested"})
"""Events after which attempts count from zero again (an operator's retry, a new plan version)."""


Verifier = Callable[[str, dict[str, str]], Awaitable[None]]
"""``verify(prompt, outputs)``: judge, after the last step, whether the request was met."""


class StepRunner(Protocol):
    """Runs one step for the executor's scheduler: ``attempt(resumed)`` runs it once; the runner
    may run it again, or answer for it (a skipped step's note)."""

    async def run(self, step: PlanStep, attempt: Attempt, *, resumed: bool, stop: StopSignal) -> str: ...


class FailureJournal(Protocol):
    async def step_retrying(
        self, step_id: str, error: ServiceError, attempt: int, attempts: int, retry_at: datetime
    ) -> None: ...
    async def step_skipped(self, step_id: str, error: ServiceError, attempts: int) -> None: ...


class ReplanRequested(ServiceError):
    """A step failed and its policy asks the planner for the steps not yet completed."""

    def __init__(self, step_id: str, error: ServiceError, attempts: int) -> None:
        super().__init__(error.message, details={**error.details, "step_id": step_id})
        self.code = error.code
        self.step_id = step_id
        self.error = error
        self.attempts = attempts


@dataclass(frozen=True, slots=True)
class PriorAttempts:
    """What a step's earlier runs left: how many attempts failed, when the next may start, and
    the error of an attempt whose failure was recorded but not yet acted on (a crash in between)."""

    failed: int = 0
    retry_at: datetime | None = None
    pending_error: ServiceError | None = None


def skipped_note(step_id: str, message: str) -> str:
    """What the dependents of a skipped step see as its result."""
    return f"[step {step_id} was skipped after it failed: {message}]"


def prior_attempts(events: Iterable[Event], failed_steps: dict[str, dict[str, Any]]) -> dict[str, PriorAttempts]:
    """Each step's attempts so far, from the task's recorded events (after the last retry or replan).

    ``failed_steps``: the error of each step the database shows ``failed`` in an executing task: its
    failure was recorded but not what its policy did about it, so that attempt counts as failed."""
    found: dict[str, PriorAttempts] = {}
    for event in events:
        if event.type in RESETS:
            found.clear()
        elif event.type == "step_retrying":
            at = datetime.fromisoformat(str(event.data["retry_at"]))
            found[event.data["step_id"]] = PriorAttempts(int(event.data["attempt"]), at)
    for step_id, error in failed_steps.items():
        prior = found.get(step_id, PriorAttempts())
        recorded = ServiceError(str(error.get("message", "step failed")), details=error.get("details") or {})
        if error.get("code") in ErrorCode.__members__.values():
            recorded.code = ErrorCode(error["code"])
        found[step_id] = PriorAttempts(prior.failed, None, recorded)
    return found


class FailurePolicies:
    """Runs each step under its ``on_failure`` (implements the executor's ``StepRunner``)."""

    def __init__(
        self,
        plan: Plan,
        journal: FailureJournal,
        prior: dict[str, PriorAttempts] | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.plan = plan
        self.journal = journal
        self.prior = dict(prior or {})
        self._now: Clock = clock or (lambda: datetime.now(UTC))

    async def run(self, step: PlanStep, attempt: Attempt, *, resumed: bool, stop: StopSignal) -> str:
        """Run ``step`` under its policy; a backoff ends early (:class:`StepStopped`) on a ``stop``
        (a sibling paused the task): the wait is recorded, and goes on when the task resumes."""
        policy = self.plan.failure_policy(step)
        prior = self.prior.pop(step.id, PriorAttempts())
        failed = prior.failed
        # A failure recorded before a crash: acted on now (with ``fail``, the step runs again, as before).
        error = prior.pending_error if policy.action != "fail" else None
        if prior.retry_at is not None and not resumed:
            await self._wait_until(prior.retry_at, stop)
        while True:
            if error is None:
                try:
                    return await attempt(resumed)
                except (*PAUSES, LeaseLostError):
                    raise
                except ServiceError as exc:
                    error = exc
            failed += 1
            if policy.action == "retry" and failed < policy.max_attempts:
                retry_at = self._now() + timedelta(seconds=policy.backoff(failed))
                await self.journal.step_retrying(step.id, error, failed, policy.max_attempts, retry_at)
                await self._wait_until(retry_at, stop)
                error, resumed = None, False
                continue
            if policy.action == "skip":
                await self.journal.step_skipped(step.id, error, failed)
                return skipped_note(step.id, error.message)
            if policy.action == "replan":
                raise ReplanRequested(step.id, error, failed)
            raise error

    async def _wait_until(self, when: datetime, stop: StopSignal) -> None:
        seconds = (when - self._now()).total_seconds()
        if seconds > 0:
            await stop.sleep(seconds)
