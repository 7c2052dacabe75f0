"""Plans: the schema the planner model must produce, and the checks a plan must pass.

A plan is stored as an immutable, numbered version with a content hash. Approval names a version;
the executor may call only the tools that version lists for each step.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import re
from collections.abc import Iterable
from graphlib import CycleError, TopologicalSorter
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

STEP_ID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
DEFAULT_RETRY_ATTEMPTS = 3


def _absent(value: object) -> bool:
    return value is None


class OnFailure(BaseModel):
    """What happens when a step fails (see ``agents/failure.py``): ``fail`` the task (the default),
    ``retry`` the step (``attempts`` runs in all, waiting ``backoff_seconds`` × 2^(n-1) before the
    n-th new attempt), ``skip`` it (its dependents still run and are told it was skipped), or
    ``replan`` the steps not yet completed."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["fail", "retry", "skip", "replan"] = Field(description="fail, retry, skip or replan.")
    attempts: int | None = Field(
        default=None,
        ge=1,
        le=10,
        description=f"retry only: runs of the step in all, the first included (default {DEFAULT_RETRY_ATTEMPTS}).",
        exclude_if=_absent,
    )
    backoff_seconds: float | None = Field(
        default=None,
        ge=0,
        le=3600,
        description="retry only: the wait before the first new attempt (doubling after each); default 0.",
        exclude_if=_absent,
    )

    @model_validator(mode="after")
    def _retry_fields_only_with_retry(self) -> OnFailure:
        if self.action != "retry" and (self.attempts is not None or self.backoff_seconds is not None):
            raise ValueError("attempts and backoff_seconds apply only to action 'retry'")
        return self

    @property
    def max_attempts(self) -> int:
        return (self.attempts or DEFAULT_RETRY_ATTEMPTS) if self.action == "retry" else 1

    def backoff(self, failed: int) -> float:
        """Seconds to wait before the next attempt, after ``failed`` failed attempts."""
        return float((self.backoff_seconds or 0.0) * 2 ** max(0, failed - 1))


FAIL = OnFailure(action="fail")


class PlanStep(BaseModel):
    """One step: what to do, and the namespaced tools (``server.tool``) it may use."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="Short unique id, e.g. 's1'. Letters, digits, '_' or '-'.")
    title: str = Field(description="A few words naming the step.")
    instruction: str = Field(description="What the executor should do in this step, self-contained.")
    tools: list[str] = Field(description="Tool names (exactly as in the catalogue) this step may call.")
    depends_on: list[str] = Field(description="Ids of steps that must finish before this one.")
    on_failure: OnFailure | None = Field(
        default=None,
        description="What to do if this step fails; absent: the plan's on_failure (default fail).",
        exclude_if=_absent,
    )


class Plan(BaseModel):
    """The planner's structured output, and the body of every stored plan version."""

    model_config = ConfigDict(extra="forbid")

    summary: str = Field(description="One or two sentences: what the plan achieves.")
    steps: list[PlanStep] = Field(description="The steps, in a sensible order.")
    on_failure: OnFailure | None = Field(
        default=None,
        description="What to do when a step fails, for steps without their own; absent: fail the task.",
        exclude_if=_absent,
    )
    verify: bool | None = Field(
        default=None,
        description="After the last step, ask whether the request was met (absent: the service's default).",
        exclude_if=_absent,
    )

    def failure_policy(self, step: PlanStep) -> OnFailure:
        """The step's own ``on_failure``, else the plan's, else ``fail``."""
        return step.on_failure or self.on_failure or FAIL

    def content_hash(self) -> str:
        body = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(body.encode()).hexdigest()

    def servers(self) -> set[str]:
        """The tool servers the plan needs (the part of each tool name before the dot)."""
        return {name.partition(".")[0] for step in self.steps for name in step.tools}

    def all_tools(self) -> set[str]:
        return {name for step in self.steps for name in step.tools}


def check_plan(plan: Plan, *, known_tools: Iterable[str], max_steps: int) -> list[str]:
    """Return the problems with ``plan`` (empty when it is valid). Messages are fit for the model."""
    known = set(known_tools)
    problems: list[str] = []
    if not plan.steps:
        return ["the plan has no steps; produce at least one step"]
    if len(plan.steps) > max_steps:
        problems.append(f"the plan has {len(plan.steps)} steps; at most {max_steps} are allowed")
    ids = [s.id for s in plan.steps]
    seen: set[str] = set()
    for step in plan.steps:
        if not STEP_ID.match(step.id):
            problems.append(f"step id {step.id!r} must be 1-40 letters, digits, '_' or '-'")
        if step.id in seen:
            problems.append(f"step id {step.id!r} is used twice")
        seen.add(step.id)
        if not step.instruction.strip():
            problems.append(f"step {step.id!r} has an empty instruction")
        for tool in step.tools:
            if tool not in known:
                problems.append(f"step {step.id!r} names unknown tool {tool!r}")
        for dep in step.depends_on:
            if dep == step.id:
                problems.append(f"step {step.id!r} depends on itself")
            elif dep not in ids:
                problems.append(f"step {step.id!r} depends on unknown step {dep!r}")
    if not problems:
        try:
            execution_order(plan)
        except CycleError as exc:
            cycle = " -> ".join(exc.args[1])
            problems.append(f"the steps' depends_on form a cycle: {cycle}")
    return problems


def execution_order(plan: Plan) -> list[PlanStep]:
    """Steps in dependency order, keeping the plan's order among independent steps.

    Raises :class:`graphlib.CycleError` (a ``ValueError``) when ``depends_on`` forms a cycle, and
    ``ValueError`` when a step depends on a step the plan does not have.
    """
    index = {step.id: i for i, step in enumerate(plan.steps)}
    for step in plan.steps:
        for dep in step.depends_on:
            if dep not in index:
                raise ValueError(f"step {step.id!r} depends on unknown step {dep!r}")
    sorter = TopologicalSorter({step.id: step.depends_on for step in plan.steps})
    sorter.prepare()
    ready: list[int] = []  # plan positions of the steps whose dependencies are done
    ordered: list[PlanStep] = []
    while sorter.is_active():
        for step_id in sorter.get_ready():
            heapq.heappush(ready, index[step_id])
        step = plan.steps[heapq.heappop(ready)]
        ordered.append(step)
        sorter.done(step.id)
    return ordered
