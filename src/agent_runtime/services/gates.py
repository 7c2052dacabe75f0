"""Decisions a paused or failed task waits for besides a plan approval: an in-doubt tool call
(retry, skip or fail it), a tool call stopped at a policy gate, a spent budget, the expiry of a gate
(or of a plan approval), and the retry of a failed task from where it failed.

A gated call is recorded (``awaiting_decision``) before it is sent, with the task paused in
``needs_attention`` and what deciding it takes on the task row (``gate``: the rule, the roles that
may decide, what happens on expiry). A decision is bound to that call id and used once: the
transaction that records it moves the task on (``approved``, so a worker resumes the step), and a
second decision finds the call decided (409). An edit is checked as a new call: against the input
schema of the tool it names *and* against the policy for that tool (an edit into another tool meets
that tool's rule, not the one that stopped the call).

Expiry timers are the ``gate_expires_at`` column: every replica sweeps due rows, and the
transaction that acts clears the column, so a timer fires once however many replicas race for it,
and fires after a restart since it is stored.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

import structlog

from agent_runtime.domain.events import (
    ApprovalExpired,
    AttentionResolved,
    BudgetRaised,
    CallDecided,
    ErrorBody,
    TaskApproved,
    TaskFailed,
    TaskRejected,
    TaskRetried,
)
from agent_runtime.domain.identity import Permission, Principal, unauthenticated
from agent_runtime.domain.records import TaskRecord, ToolCallRecord
from agent_runtime.domain.states import StepStatus, TaskStatus, ToolCallStatus
from agent_runtime.errors import InputValidationError, InvalidStateError, NotFoundError
from agent_runtime.services import approvals as rules
from agent_runtime.services.access import allowed, require_roles, visible
from agent_runtime.services.governance import Governance
from agent_runtime.services.handoff import Commands
from agent_runtime.services.tasks import cancel_in, require_status
from agent_runtime.services.usage import UNPRICED, USAGE_KEYS
from agent_runtime.settings import ApprovalSettings
from agent_runtime.store.store import TaskStore
from agent_runtime.store.tx import TaskTx
from agent_runtime.tools.base import ToolInfo

log = structlog.get_logger(__name__)

Decision = Literal["approve", "deny", "edit"]
Resolution = Literal["retry", "skip", "fail"]


class Gates:
    def __init__(
        self,
        store: TaskStore,
        commands: Commands,
        approvals: ApprovalSettings,
        tool: Callable[[str], ToolInfo | None],
        governance: Governance | None = None,
    ) -> None:
        self.store = store
        self._commands = commands
        self.approvals = approvals
        self._tool = tool
        self.governance = governance

    async def _get(self, task_id: str, who: Principal) -> TaskRecord:
        return visible(await self.store.get_task(task_id), who)

    # -- in-doubt calls and failed tasks -------------------------------------------------------

    async def resolve_attention(
        self,
        task_id: str,
        tool_call_id: str,
        action: Resolution,
        result: str | None,
        actor: str | None = None,
        *,
        principal: Principal | None = None,
    ) -> TaskRecord:
        """Decide an in-doubt tool call: ``retry`` it, ``skip`` it with a stated result, or ``fail`` the task."""
        who = allowed(principal or unauthenticated(actor), Permission.DECIDE)
        actor = who.subject
        if action == "skip" and result is None:
            raise InputValidationError("skip needs a stated result", details={"field": "result"})
        require_status(await self._get(task_id, who), TaskStatus.NEEDS_ATTENTION, "resolve a tool call")
        calls = {c.id: c for c in await self.store.tool_calls(task_id)}
        call = calls.get(tool_call_id)
        if call is None:
            raise NotFoundError(f"task {task_id} has no tool call {tool_call_id}", details={"field": "tool_call_id"})
        async with self._commands.transaction(task_id) as tx:
            visible(tx.task, who)
            require_status(tx.task, TaskStatus.NEEDS_ATTENTION, "resolve a tool call")
            if call.status != ToolCallStatus.IN_DOUBT:
                raise InvalidStateError(
                    f"tool call {tool_call_id} is {call.status.value}, not in_doubt",
                    details={"current_status": tx.task.status.value, "tool_call_status": call.status.value},
                )
            resolved = AttentionResolved(tool_call_id=tool_call_id, action=action, actor=actor)
            if action == "fail":
                tx.update_tool_call(tool_call_id, status=ToolCallStatus.FAILED, finished_at=tx.now)
                error = {"code": "in_doubt_failed", "message": f"operator failed in-doubt call to {call.tool_name}"}
                tx.transition(TaskStatus.FAILED, error=error)
                tx.emit(resolved)
                tx.emit(TaskFailed(error=ErrorBody.model_validate(error)))
            else:
                if action == "skip":
                    tx.update_tool_call(
                        tool_call_id,
                        status=ToolCallStatus.SKIPPED,
                        result={"text": result, "stated_by_operator": True},
                        finished_at=tx.now,
                    )
                else:
                    tx.update_tool_call(tool_call_id, result={"operator_retry": True})
                tx.transition(TaskStatus.APPROVED)
                tx.emit(resolved)
        return tx.task

    async def retry(self, task_id: str, actor: str | None = None, *, principal: Principal | None = None) -> TaskRecord:
        """Run a failed task again from where it failed, under the same approved plan version:
        completed steps keep their outputs; failed, cancelled and skipped steps run again (from the
        start of their conversation). 409 with the current state unless the task is ``failed`` with
        an approved plan version (a task that failed in planning has none: submit it again)."""
        who = allowed(principal or unauthenticated(actor), Permission.DECIDE)
        task = await self._get(task_id, who)
        require_status(task, TaskStatus.FAILED, "retry")
        version = task.approved_plan_version
        if version is None:
            raise InvalidStateError(
                "cannot retry: the task failed before a plan version was approved",
                details={"current_status": task.status.value, "current_plan_version": task.current_plan_version},
            )
        # A failed task has no worker: its steps cannot change before the transaction below.
        again = [s.step_id for s in await self.store.steps(task_id, version) if s.status != StepStatus.COMPLETED]
        async with self._commands.transaction(task_id) as tx:
            visible(tx.task, who)
            require_status(tx.task, TaskStatus.FAILED, "retry")
            rerun = {StepStatus.FAILED, StepStatus.CANCELLED, StepStatus.SKIPPED, StepStatus.RUNNING}
            tx.update_steps_where(version, rerun, status=StepStatus.PENDING, error=None, finished_at=None)
            # Nothing of the failed run is left in flight: a takeover must not see these as in doubt.
            tx.update_tool_calls_where(
                {ToolCallStatus.STARTED, ToolCallStatus.IN_DOUBT, ToolCallStatus.AWAITING_DECISION},
                status=ToolCallStatus.CANCELLED,
                finished_at=tx.now,
            )
            tx.transition(
                TaskStatus.APPROVED, action="retry", error=None, finished_at=None, gate=None, gate_expires_at=None
            )
            tx.emit(TaskRetried(plan_version=version, steps=again, actor=who.subject))
        return tx.task

    # -- call gates -----------------------------------------------------------------------------

    async def decide_call(
        self,
        task_id: str,
        call_id: str,
        decision: Decision,
        *,
        reason: str | None = None,
        tool: str | None = None,
        arguments: dict[str, Any] | None = None,
        principal: Principal | None = None,
    ) -> TaskRecord:
        """Approve, deny (the model is told, with ``reason``) or edit (``tool`` and/or ``arguments``)
        the gated call ``call_id``; the task resumes."""
        who = allowed(principal, Permission.DECIDE)
        task = visible(await self.store.get_task(task_id), who)
        call = await self._gated_call(task, call_id)
        if decision != "deny":  # denying is always safe; letting a call through is a second pair of eyes
            rules.refuse_submitter(task, who, self.approvals)
        require_roles(who, (task.gate or {}).get("roles") or [], "decide this call")
        name, args = call.tool_name, call.arguments
        if decision == "edit":
            if tool is None and arguments is None:
                raise InputValidationError(
                    "an edit names new arguments, a new tool, or both", details={"field": "arguments"}
                )
            name, args = await self._checked_edit(task, call, tool or call.tool_name, arguments or call.arguments, who)
        elif tool is not None or arguments is not None:
            field = "tool" if tool is not None else "arguments"
            raise InputValidationError(f'{field} is only for decision "edit"', details={"field": field})
        async with self._commands.transaction(task_id) as tx:
            visible(tx.task, who)
            self._require_gate(tx.task, call_id, call)
            if tx.task.gate != task.gate:
                raise InvalidStateError(
                    f"tool call {call_id} was decided meanwhile", details={"current_status": tx.task.status.value}
                )
            decided = {"decision": decision, "by": who.subject, "reason": reason, "tool": name, "arguments": args}
            if decision == "deny":
                text = f"an approver denied this call: {reason}" if reason else "an approver denied this call"
                tx.update_tool_call(
                    call_id, status=ToolCallStatus.REFUSED, result={"reason": text, "decision": decided},
                    finished_at=tx.now,
                )  # fmt: skip
            else:
                tx.update_tool_call(call_id, result={"gate": (call.result or {}).get("gate"), "decision": decided})
            tx.transition(TaskStatus.APPROVED, gate=None, gate_expires_at=None)
            tx.emit(
                CallDecided(
                    call_id=call_id, decision=decision, actor=who.subject, reason=reason, tool=name, arguments=args
                )
            )
        return tx.task

    async def _gated_call(self, task: TaskRecord, call_id: str) -> ToolCallRecord:
        """The call, if the task waits at a gate (409 first, as for any command in the wrong
        state), the call exists (404) and it is the one waiting (409)."""
        self._require_gate(task, call_id, None)
        call = next((c for c in await self.store.tool_calls(task.id) if c.id == call_id), None)
        if call is None:
            raise NotFoundError(f"task {task.id} has no tool call {call_id}", details={"field": "call_id"})
        self._require_gate(task, call_id, call)
        return call

    @staticmethod
    def _require_gate(task: TaskRecord, call_id: str, call: ToolCallRecord | None) -> None:
        gate = task.gate or {}
        details: dict[str, Any] = {"current_status": task.status.value}
        if task.status != TaskStatus.NEEDS_ATTENTION or gate.get("kind") != "call":
            raise InvalidStateError(f"cannot decide a tool call: task is {task.status.value}", details=details)
        if call is not None and (gate.get("call_id") != call_id or call.status != ToolCallStatus.AWAITING_DECISION):
            details["tool_call_status"] = call.status.value
            raise InvalidStateError(f"tool call {call_id} does not wait for a decision", details=details)

    async def _checked_edit(
        self, task: TaskRecord, call: ToolCallRecord, name: str, args: dict[str, Any], who: Principal
    ) -> tuple[str, dict[str, Any]]:
        """An edited call, checked like a new one: the step allows the tool, the arguments fit
        its input schema, and the policy for *that* tool lets this approver approve it."""
        version = task.approved_plan_version
        plan = (await self.store.plan_version(task.id, version)).plan if version is not None else None
        step = next((s for s in plan.steps if s.id == call.step_id), None) if plan else None
        if step is None or name not in step.tools:
            allowed = sorted(step.tools) if step else []
            raise InputValidationError(
                f"step {call.step_id} may not call {name!r}; the approved plan allows {allowed}",
                details={"field": "tool", "allowed": allowed},
            )
        info = self._tool(name)
        if info is None:
            raise InputValidationError(f"tool {name!r} is not in the catalogue", details={"field": "tool"})
        import jsonschema  # on first use: ~20-50 ms of start-up otherwise

        problems = [
            f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
            for e in jsonschema.Draft202012Validator(info.input_schema).iter_errors(args)
        ]
        if problems:
            raise InputValidationError(
                f"the edited arguments do not fit {name}'s input schema: " + "; ".join(problems),
                details={"field": "arguments", "problems": problems},
            )
        if self.governance is not None:
            check = self.governance.call_policy(task)(name, args)
            if check.action == "deny":
                raise InputValidationError(
                    f"the approval policy denies {name} with these arguments (rule {check.rule!r}): {check.reason}",
                    details={"field": "arguments", "rule": check.rule},
                )
            if check.action == "gate":
                require_roles(who, list(check.roles), f"approve {name} (rule {check.rule!r})")
        return name, args

    # -- budgets --------------------------------------------------------------------------------

    async def raise_budget(
        self, task_id: str, budget: dict[str, float], *, principal: Principal | None = None
    ) -> TaskRecord:
        """Raise the budget of a task paused by ``budget_exceeded``; it resumes. Every limit named
        must be above its current value and what the task has spent; limits not named stay."""
        who = allowed(principal, Permission.DECIDE)
        if not budget:
            raise InputValidationError("name at least one limit to raise", details={"field": "budget"})
        async with self._commands.transaction(task_id) as tx:
            task = visible(tx.task, who)
            if task.status != TaskStatus.NEEDS_ATTENTION or (task.gate or {}).get("kind") != "budget":
                raise InvalidStateError(
                    "the task is not paused by its budget", details={"current_status": task.status.value}
                )
            spent, current = task.usage or {}, task.budget or {}
            for key, limit in budget.items():
                if key not in USAGE_KEYS:
                    raise InputValidationError(f"{key} is not a budget limit", details={"field": key})
                floor = max(float(spent.get(key) or 0), float(current.get(key) or 0))
                if limit <= floor:
                    raise InputValidationError(
                        f"{key} must be above the current limit and what the task has spent ({floor:g})",
                        details={"field": key, "current": current.get(key), "spent": spent.get(key)},
                    )
            raised = {**(task.budget or {}), **budget}
            unpriced = int(spent.get(UNPRICED) or 0)
            if "cost_usd" in raised and unpriced:  # the pause would come straight back
                raise InvalidStateError(
                    f"the task called a model without a price ({UNPRICED}: {unpriced}), so its cost is unknown and "
                    "a cost_usd limit stays reached whatever it is raised to (fail closed): cancel the task, "
                    "and add the model to pricing.models for the tasks after it",
                    details={"current_status": task.status.value, "field": "cost_usd", UNPRICED: unpriced},
                )
            planning = (task.gate or {}).get("phase") == "planning"  # a revision or a replan: plan again
            target = TaskStatus.QUEUED if planning else TaskStatus.APPROVED
            tx.transition(target, budget=raised, gate=None, gate_expires_at=None)
            tx.emit(BudgetRaised(actor=who.subject, budget=raised))
        return tx.task

    # -- expiry ---------------------------------------------------------------------------------

    async def expire_due(self, now: datetime | None = None) -> int:
        """Act on every gate whose ``expire_after`` has passed; how many fired here."""
        fired = 0
        for task_id in await self.store.gates_due(now or datetime.now(UTC)):
            try:
                if await self._expire(task_id, now or datetime.now(UTC)):
                    fired += 1
            except (InvalidStateError, NotFoundError) as exc:  # decided or gone meanwhile
                log.debug("gate_expiry_skipped", task_id=task_id, error=exc.message)
        return fired

    async def _expire(self, task_id: str, now: datetime) -> bool:
        async with self._commands.transaction(task_id) as tx:
            task = tx.task
            gate = task.gate or {}
            if task.gate_expires_at is None or task.gate_expires_at > now:
                return False  # decided, or already fired by another replica
            action = gate.get("on_expiry") or "reject"
            if gate.get("kind") == "call" and task.status == TaskStatus.NEEDS_ATTENTION:
                self._expire_call(tx, gate, action)
            elif task.status == TaskStatus.AWAITING_APPROVAL:
                self._expire_plan(tx, gate, action)
            else:
                tx.update(gate_expires_at=None)
        return True

    @staticmethod
    def _expire_call(tx: TaskTx, gate: dict[str, Any], action: str) -> None:
        call_id = str(gate.get("call_id"))
        tx.emit(ApprovalExpired(kind="call", rule=gate.get("rule"), action="cancel" if action == "cancel" else "reject",
                                call_id=call_id))  # fmt: skip
        if action == "cancel":
            cancel_in(tx, "the call approval expired", None, "approval_expired")
            return
        text = "nobody decided this call before its approval expired; it was not made"
        tx.update_tool_call(call_id, status=ToolCallStatus.REFUSED, result={"reason": text}, finished_at=tx.now)
        tx.transition(TaskStatus.APPROVED, gate=None, gate_expires_at=None)

    @staticmethod
    def _expire_plan(tx: TaskTx, gate: dict[str, Any], action: str) -> None:
        version = tx.task.current_plan_version or 0
        rule = gate.get("rule")
        act: Literal["reject", "cancel", "approve"] = "approve" if action == "approve" else (
            "cancel" if action == "cancel" else "reject"
        )  # fmt: skip
        tx.emit(ApprovalExpired(kind="plan", rule=rule, action=act, plan_version=version))
        if act == "approve":
            actor = f"policy:{rule}"
            hash_ = str(gate.get("content_hash") or "")
            tx.add_approval(version, "approved", actor, "approval expired; the rule approves on expiry",
                            content_hash=hash_ or None)  # fmt: skip
            tx.transition(TaskStatus.APPROVED, approved_plan_version=version, gate=None, gate_expires_at=None)
            tx.emit(TaskApproved(plan_version=version, actor=actor, content_hash=hash_, approvers=[actor]))
        elif act == "cancel":
            cancel_in(tx, "the plan approval expired", None, "approval_expired")
        else:
            reason = "the plan approval expired"
            tx.transition(TaskStatus.REJECTED, error={"code": "approval_expired", "message": reason},
                          gate=None, gate_expires_at=None)  # fmt: skip
            tx.add_approval(version, "rejected", f"policy:{rule}", reason)
            tx.emit(TaskRejected(plan_version=version, reason=reason, actor=f"policy:{rule}"))
