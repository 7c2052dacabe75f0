"""The approval policy, budgets and prices as the jobs and commands use them.

The rules themselves are pure (:mod:`agent_runtime.policy`); this module gives them the task's
facts (tenant, submitter roles, metadata, the catalogue's tool annotations) and turns their
decisions into what the executor, the planner job and the commands act on. Evaluation fails
closed: the engine answers an error with a refusal, and a decision this module does not know is a
refusal too.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import structlog

from agent_runtime.agents.execution import CallCheck, CallPolicy
from agent_runtime.domain.events import ApprovalRequired, PlanEstimate, TaskApproved
from agent_runtime.domain.plan import Plan
from agent_runtime.domain.records import ApprovalRecord, PlanVersionRecord, StepUsage, TaskRecord
from agent_runtime.domain.states import TaskStatus
from agent_runtime.errors import ServiceError
from agent_runtime.llm.base import Usage
from agent_runtime.policy.decisions import (
    Allow,
    AutoApprove,
    CallFacts,
    DenyCall,
    DenyPlan,
    PlanDecision,
    PlanFacts,
    RequireApproval,
    RequireCallApproval,
)
from agent_runtime.policy.engine import decide_call, decide_plan
from agent_runtime.policy.estimate import Estimate, StepSample, estimate_plan
from agent_runtime.policy.loader import PolicyHolder
from agent_runtime.policy.pricing import PriceTable
from agent_runtime.profiles.model import TaskProfile
from agent_runtime.services.approvals import POLICY, carried_approvers
from agent_runtime.settings import Budget, Settings
from agent_runtime.store.tx import TaskTx
from agent_runtime.tools.base import ToolInfo

log = structlog.get_logger(__name__)


class Governance:
    def __init__(
        self,
        settings: Settings,
        holder: PolicyHolder,
        tool: Callable[[str], ToolInfo | None],
        tools: Callable[[], Sequence[ToolInfo]],
        *,
        planner_model: str,
        executor_model: str,
        history: Callable[[int], Awaitable[list[StepUsage]]] | None = None,
    ) -> None:
        self.settings = settings
        self._history_source = history
        self._history: list[StepSample] = []
        self._history_read = -math.inf
        self.planner_model = planner_model
        self.executor_model = executor_model
        self.holder = holder
        self._tool = tool
        self._tools = tools
        self.prices = PriceTable.from_settings(settings.pricing)

    # -- calls ----------------------------------------------------------------------------------

    def call_policy(self, task: TaskRecord) -> CallPolicy:
        """The executor's gate for ``task``'s calls (the policy in force when each call is made)."""
        roles = frozenset(task.submitter_roles or ())

        def check(tool: str, arguments: dict[str, Any]) -> CallCheck:
            facts = CallFacts(
                tool=tool,
                arguments=arguments,
                info=self._tool(tool),
                tenant=task.tenant,
                roles=roles,
                metadata=task.metadata,
            )
            match decide_call(self.holder.policy, facts):
                case Allow():
                    return CallCheck("allow")
                case RequireCallApproval() as gate:
                    seconds = gate.expire_after.total_seconds() if gate.expire_after is not None else None
                    return CallCheck(
                        "gate",
                        rule=gate.rule_id,
                        roles=tuple(sorted(gate.roles or ())),
                        expire_after_seconds=seconds,
                        on_expiry=gate.on_expiry,
                    )
                case DenyCall() as deny:
                    return CallCheck("deny", rule=deny.rule_id, reason=deny.reason)
                case other:  # pragma: no cover - fail closed on a decision this code does not know
                    return CallCheck("deny", rule=None, reason=f"unknown policy decision {other!r}")

        return check

    # -- plans ----------------------------------------------------------------------------------

    def decide_plan(self, task: TaskRecord, plan: Plan, estimate: Estimate | None) -> PlanDecision:
        facts = PlanFacts(
            plan=plan,
            tenant=task.tenant,
            roles=frozenset(task.submitter_roles or ()),
            metadata=task.metadata,
            estimated_cost_usd=estimate.cost_usd if estimate is not None else None,
        )
        tools: Mapping[str, ToolInfo] = {t.qualified_name: t for t in self._tools()}
        decision = decide_plan(self.holder.policy, facts, tools, approvals=self.settings.approvals)
        if not isinstance(decision, AutoApprove | RequireApproval | DenyPlan):  # pragma: no cover - fail closed
            return DenyPlan(rule_id="(policy)", refusals=(), error=True)
        return decision

    def refusals(self, task: TaskRecord) -> Callable[[Plan], list[str]]:
        """For the planner's repair attempt: the problems a ``deny`` decision names (else none)."""

        def check(plan: Plan) -> list[str]:
            decision = self.decide_plan(task, plan, self.estimate(plan, None, task=task))
            if isinstance(decision, DenyPlan):
                return [r.describe() for r in decision.refusals] or ["refused by the approval policy"]
            return []

        return check

    def budget(self, decision: PlanDecision) -> dict[str, float]:
        """The task's budget: the config's defaults with the deciding rule's limits over them."""
        override = decision.budget if isinstance(decision, AutoApprove | RequireApproval) else None
        merged: Budget = self.settings.budgets.merged(override)
        return {k: float(v) for k, v in merged.model_dump(exclude_none=True).items()}

    def estimate(
        self,
        plan: Plan,
        planner_usage: Usage | None,
        history: Sequence[StepSample] = (),
        *,
        task: TaskRecord | None = None,
    ) -> Estimate:
        """``plan``'s estimate, priced with the models ``task``'s agent profile names (else the
        service's own)."""
        planner, executor = _profile_models(task)
        return estimate_plan(
            plan,
            planner_usage,
            history,
            planner_model=planner or self.planner_model,
            executor_model=executor or self.executor_model,
            prices=self.prices,
        )

    async def propose(
        self, task: TaskRecord, plan: Plan, planner_usage: Usage | None, *, edited: bool = False
    ) -> Proposal:
        """The decision for a new plan version of ``task``, with its estimate from the history of
        similar steps. An operator's edit (``edited``) is never approved automatically: the person
        who wrote it is not a second pair of eyes."""
        estimate = self.estimate(plan, planner_usage, await self.history(), task=task)
        decision = self.decide_plan(task, plan, estimate)
        if edited and isinstance(decision, AutoApprove):
            decision = RequireApproval(rule_id=None, count=self.settings.approvals.required, budget=decision.budget)
        return Proposal.of(decision, estimate, self.budget)

    async def history(self) -> list[StepSample]:
        """Recently completed steps (re-read at most every ``policy.estimate_history_seconds``; a
        failed read keeps the last one: an estimate is advice, never a reason to fail a plan)."""
        config = self.settings.policy
        if self._history_source is None or not config.estimate_history_tasks:
            return []
        if time.monotonic() - self._history_read < config.estimate_history_seconds:
            return self._history
        try:
            found = await self._history_source(config.estimate_history_tasks)
        except Exception as exc:
            log.warning("estimate_history_unavailable", error=f"{type(exc).__name__}: {exc}")
            return self._history
        self._history = found
        self._history_read = time.monotonic()
        return self._history

    def price(self, model: str, input_tokens: int, output_tokens: int) -> float | None:
        return self.prices.cost(model, input_tokens, output_tokens)


@dataclass(frozen=True, slots=True)
class Proposal:
    """What the policy decided for a new plan version, ready to write with it."""

    decision: PlanDecision
    estimate: PlanEstimate | None
    budget: dict[str, float]
    carried: tuple[str, ...] = ()
    """Under a ``sticky`` rule: who approved an earlier version that covers this one."""

    @classmethod
    def of(
        cls, decision: PlanDecision, estimate: Estimate | None, budget: Callable[[PlanDecision], dict[str, float]]
    ) -> Proposal:
        body = None
        if estimate is not None:
            body = PlanEstimate(
                input_tokens=estimate.input_tokens,
                output_tokens=estimate.output_tokens,
                cost_usd=estimate.cost_usd,
                wall_seconds=estimate.wall_seconds,
                tool_calls=estimate.tool_calls,
                basis=estimate.basis,
            )
        return cls(decision, body, budget(decision))

    def refused(self) -> DenyPlan | None:
        return self.decision if isinstance(self.decision, DenyPlan) else None

    @property
    def sticky(self) -> bool:
        return isinstance(self.decision, RequireApproval) and self.decision.sticky

    def carrying(self, records: Sequence[ApprovalRecord], earlier: Sequence[PlanVersionRecord], plan: Plan) -> Proposal:
        """Under a ``sticky`` rule, the approvals of the task's ``earlier`` versions that cover
        ``plan`` (Atlantis' rule): with as many as the rule needs, the new version is approved
        when written; with fewer, they count towards its gate."""
        decision = self.decision
        if not (isinstance(decision, RequireApproval) and decision.sticky):
            return self
        carried = carried_approvers(records, plan, earlier, decision.roles or ())
        return replace(self, carried=tuple(carried))

    def apply(self, tx: TaskTx, version: int, content_hash: str) -> None:
        """Write the decision with plan version ``version`` (in ``tx``, awaiting approval): an
        automatic approval recorded as ``policy:<rule>``, or the gate a person must pass."""
        # A new version never lowers a limit the task already had (an approver may have raised it).
        had = tx.task.budget or {}
        budget = {k: max(v, float(had.get(k, v))) for k, v in self.budget.items()}
        tx.update(estimate=self.estimate.model_dump() if self.estimate else None, budget=budget)
        decision = self.decision
        if isinstance(decision, AutoApprove):
            actor = decision.actor
            tx.add_approval(version, "approved", actor, "approved by the approval policy", content_hash=content_hash)
            tx.transition(TaskStatus.APPROVED, approved_plan_version=version, gate=None, gate_expires_at=None)
            tx.emit(TaskApproved(plan_version=version, actor=actor, content_hash=content_hash, approvers=[actor]))
            return
        assert isinstance(decision, RequireApproval), decision  # a DenyPlan is refused before
        if self.carried and len(self.carried) >= decision.count:
            actor = f"{POLICY}{decision.rule_id}"
            kept = ", ".join(self.carried)
            reason = f"within the scope of an approved version (sticky rule): the approvals of {kept} carry over"
            tx.add_approval(version, "approved", actor, reason, content_hash=content_hash)
            tx.transition(TaskStatus.APPROVED, approved_plan_version=version, gate=None, gate_expires_at=None)
            tx.emit(
                TaskApproved(plan_version=version, actor=actor, content_hash=content_hash, approvers=list(self.carried))
            )
            return
        expires = tx.now + decision.expire_after if decision.expire_after is not None else None
        roles = sorted(decision.roles or ())
        gate = {
            "kind": "plan", "rule": decision.rule_id, "roles": roles, "required": decision.count,
            "on_expiry": decision.on_expiry, "sticky": decision.sticky, "content_hash": content_hash,
        }  # fmt: skip
        tx.update(gate=gate, gate_expires_at=expires)
        tx.emit(
            ApprovalRequired(
                plan_version=version,
                rule=decision.rule_id,
                roles=roles,
                required=decision.count,
                expires_at=expires,
                on_expiry=decision.on_expiry if expires is not None else None,
                passed_over=list(decision.skipped),
            )
        )


def _profile_models(task: TaskRecord | None) -> tuple[str | None, str | None]:
    """The planner and executor models ``task``'s profile snapshot names (``None``: the role's own).
    A snapshot that fails its hash is the planning job's to refuse; here it names no model."""
    if task is None:
        return None, None
    try:
        profile = TaskProfile.of_task(task).profile
    except ServiceError:
        return None, None
    return profile.planner.model, profile.executor.model
