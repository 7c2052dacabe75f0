"""Task commands from frontends and operators: submit, approve, reject, revise, edit, cancel, resolve.

Each command is one store transaction that checks the state table and writes its events. Nothing
here waits for planning or execution; a command that makes a task claimable hands it to this
process's runner when it has room (:mod:`agent_runtime.services.handoff`).

Every query and command takes the caller's :class:`Principal` (``None``: a trusted in-process
caller, treated as the unidentified admin of tenant ``default``). A task the principal may not see
(another tenant's; another submitter's, for a submitter) answers exactly as a missing one: 404.
The actor recorded for a command is the principal's subject. Approval rules (self-approval,
distinct approvers, content hash) are in :mod:`agent_runtime.services.approvals`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from agent_runtime.domain.events import (
    ApprovalRecorded,
    ApprovalRequired,
    ApprovalsDiscarded,
    Event,
    PlanEdited,
    RevisionRequested,
    TaskApproved,
    TaskCancelled,
    TaskRejected,
)
from agent_runtime.domain.identity import Permission, Principal, unauthenticated
from agent_runtime.domain.inputs import SESSION_ID
from agent_runtime.domain.plan import Plan, check_plan
from agent_runtime.domain.records import (
    PlanVersionRecord,
    StepRecord,
    TaskRecord,
    ToolCallRecord,
)
from agent_runtime.domain.states import StepStatus, TaskStatus, ToolCallStatus, is_terminal
from agent_runtime.domain.text import is_blank
from agent_runtime.errors import (
    ForbiddenError,
    InputValidationError,
    InvalidStateError,
    PayloadTooLargeError,
    StalePlanVersionError,
)
from agent_runtime.policy.sticky import is_scope_subset
from agent_runtime.profiles.model import BUILTIN, ProfileSet, TaskProfile
from agent_runtime.services import approvals as rules
from agent_runtime.services import recovery
from agent_runtime.services.access import allowed, require_roles, visible
from agent_runtime.services.governance import Governance
from agent_runtime.services.handoff import Commands, HandOff
from agent_runtime.settings import ApprovalSettings, LimitSettings
from agent_runtime.store.store import TaskStore
from agent_runtime.store.tx import TaskTx


@dataclass(frozen=True, slots=True)
class TaskView:
    """A task with its current plan version and that version's step statuses."""

    task: TaskRecord
    plan: PlanVersionRecord | None
    steps: list[StepRecord]
    attention: list[ToolCallRecord]


class TaskService:
    def __init__(
        self,
        store: TaskStore,
        limits: LimitSettings,
        known_tools: Callable[[], Iterable[str]],
        approvals: ApprovalSettings | None = None,
        hand_off: HandOff | None = None,
        governance: Governance | None = None,
        profiles: Callable[[], ProfileSet] | None = None,
    ) -> None:
        """``profiles``: the agent profiles in force (read at each submit; None: the built-in one)."""
        self._profiles = profiles or (lambda: BUILTIN)
        self.store = store
        self.limits = limits
        self._known_tools = known_tools
        self.approvals = approvals or ApprovalSettings()
        self._commands = Commands(store, hand_off)
        self.governance = governance

    # -- queries --------------------------------------------------------------------------------

    async def get(self, task_id: str, principal: Principal | None = None) -> TaskRecord:
        """The task row, if ``principal`` may see it (else 404, as for a task that does not exist)."""
        return visible(await self.store.get_task(task_id), principal)

    async def view(self, task_id: str, principal: Principal | None = None) -> TaskView:
        return await self.view_of(await self.get(task_id, principal))

    async def list_tasks(
        self, principal: Principal | None, *, status: TaskStatus | None, limit: int, cursor: str | None
    ) -> tuple[list[TaskRecord], str | None]:
        """The tasks ``principal`` may see, newest first: its tenant's, or (a submitter) its own."""
        who = principal or unauthenticated()
        own_only = not who.sees(who.tenant, None)
        return await self.store.list_tasks(
            status=status,
            limit=limit,
            cursor=cursor,
            tenant=who.tenant if who.authenticated else None,
            submitted_by=who.subject if own_only else None,
        )

    async def plan_versions(self, task_id: str, principal: Principal | None = None) -> list[PlanVersionRecord]:
        """Every plan version of the task, oldest first (404 for a task ``principal`` may not see)."""
        await self.get(task_id, principal)
        return await self.store.plan_versions(task_id)

    async def events_after(self, task_id: str, after: int, limit: int) -> list[Event]:
        """Up to ``limit`` stored events of the task with a sequence number above ``after``."""
        return await self.store.events_after(task_id, after, limit)

    async def count_by_status(self) -> dict[str, int]:
        return await self.store.count_by_status()

    async def ping(self) -> None:
        """Raise if the database cannot be reached."""
        await self.store.ping()

    async def view_of(self, task: TaskRecord) -> TaskView:
        """``task`` (as read, or as a command's transaction returned it) with its approved plan
        version (the one awaiting approval while it waits), that version's step statuses and, when
        it needs attention, its in-doubt calls."""
        task_id = task.id
        plan = None
        steps: list[StepRecord] = []
        version = task.approved_plan_version or task.current_plan_version
        if task.status == TaskStatus.AWAITING_APPROVAL:  # the version waiting (a replan's, after one ran)
            version = task.current_plan_version
        if version is not None:
            plan = await self.store.plan_version(task_id, version)
            steps = await self.store.steps(task_id, version)
        attention: list[ToolCallRecord] = []
        if task.status == TaskStatus.NEEDS_ATTENTION:
            waiting = (ToolCallStatus.IN_DOUBT, ToolCallStatus.AWAITING_DECISION)
            attention = [c for c in await self.store.tool_calls(task_id) if c.status in waiting]
        return TaskView(task=task, plan=plan, steps=steps, attention=attention)

    # -- commands -------------------------------------------------------------------------------

    async def submit(
        self,
        prompt: str,
        metadata: dict[str, Any] | None,
        *,
        principal: Principal | None = None,
        profile: str | None = None,
        session_id: str | None = None,
    ) -> TaskRecord:
        """Store a new task. ``profile``: the agent profile it runs under (the default one when
        None), snapshotted now; ``session_id``: the session whose earlier tasks it follows up."""
        who = allowed(principal, Permission.SUBMIT)
        chosen = self._profiles().choose(profile)
        if session_id is not None and not re.fullmatch(SESSION_ID, session_id):
            raise InputValidationError(f"session_id must match {SESSION_ID}", details={"field": "session_id"})
        if is_blank(prompt):
            raise InputValidationError("prompt must not be empty", details={"field": "prompt"})
        if len(prompt) > self.limits.max_prompt_chars:
            raise PayloadTooLargeError(
                f"prompt has {len(prompt)} characters; the limit is {self.limits.max_prompt_chars}",
                details={"field": "prompt", "limit": self.limits.max_prompt_chars},
            )
        meta = metadata or {}
        if len(json.dumps(meta)) > self.limits.max_metadata_bytes:
            raise PayloadTooLargeError(
                f"metadata is larger than {self.limits.max_metadata_bytes} bytes",
                details={"field": "metadata", "limit": self.limits.max_metadata_bytes},
            )
        submitted_by = who.subject if who.authenticated else None
        return await self._commands.create(
            lambda lease_to: self.store.create_task(
                prompt,
                meta,
                tenant=who.tenant,
                submitted_by=submitted_by,
                submitter_roles=who.sorted_roles if who.authenticated else None,
                lease_to=lease_to,
                profile=chosen.row(),
                session_id=session_id,
            )
        )

    async def approve(
        self,
        task_id: str,
        plan_version: int,
        actor: str | None = None,
        *,
        principal: Principal | None = None,
        content_hash: str | None = None,
        comment: str | None = None,
    ) -> tuple[TaskRecord, bool]:
        """Approve ``plan_version`` (and, when given, its ``content_hash``). Returns (task, created):
        a repeat of the same approval is a no-op. With ``approvals.required`` > 1 an approval is
        recorded and the task stays awaiting approval until enough distinct approvers agree."""
        who = allowed(principal or unauthenticated(actor), Permission.DECIDE)
        # Everything the decision reads is read *before* the transaction: a read inside it would
        # need a second pooled connection while the first waits on the task's row lock, and a burst
        # of approvals would starve the pool. Plan versions never change; the approvals read is
        # checked against the task's event sequence number inside the transaction (every approval
        # writes an event), and read again if another decision came in between.
        with_approvals = False
        for _ in range(rules.MAX_DECISION_RETRIES):
            seen = await rules.decision_snapshot(
                self.store, self.approvals, task_id, plan_version, with_approvals=with_approvals
            )
            try:
                return await self._approve_once(task_id, plan_version, who, content_hash, comment, seen)
            except rules.Raced as raced:
                with_approvals = with_approvals or raced.with_approvals
        raise InvalidStateError("too many concurrent decisions on this task; try again", details={"task_id": task_id})

    async def _approve_once(
        self,
        task_id: str,
        plan_version: int,
        who: Principal,
        content_hash: str | None,
        comment: str | None,
        seen: rules.Snapshot,
    ) -> tuple[TaskRecord, bool]:
        async with self._commands.transaction(task_id) as tx:
            task = visible(tx.task, who)
            rules.refuse_submitter(task, who, self.approvals)
            if task.approved_plan_version == plan_version and task.status in (
                TaskStatus.APPROVED,
                TaskStatus.EXECUTING,
                TaskStatus.NEEDS_ATTENTION,
                TaskStatus.COMPLETED,
            ):
                return task, False
            require_status(task, TaskStatus.AWAITING_APPROVAL, "approve")
            self._require_current(task, plan_version)
            version = seen.version
            if version is None:  # current, yet unread: created between the read and this transaction
                raise rules.Raced
            rules.check_hash(task, version, content_hash)
            rules.refuse_author(task, version, who, self.approvals)
            _require_gate_roles(task, who, "approve")
            gate = task.gate or {}
            required = int(gate.get("required") or self.approvals.required)
            if seen.last_seq is not None and seen.last_seq != task.last_seq:
                raise rules.Raced
            sticky = bool(gate.get("sticky"))
            if (required > 1 or sticky) and seen.last_seq is None:
                raise rules.Raced(with_approvals=True)  # the policy's gate needs the approvals read
            approvers = rules.approvers_of(
                seen.approvals, version, seen.versions if sticky else (), list(gate.get("roles") or ())
            )
            if who.subject in approvers:
                return task, False  # this approver's approval of this version is already counted
            approvers.append(who.subject)
            tx.add_approval(
                plan_version,
                "approved",
                who.subject,
                comment,
                actor_roles=who.sorted_roles,
                content_hash=version.content_hash,
            )
            data: dict[str, Any] = {
                "plan_version": plan_version, "actor": who.subject, "content_hash": version.content_hash,
            }  # fmt: skip
            if len(approvers) >= required:
                tx.transition(TaskStatus.APPROVED, approved_plan_version=plan_version, gate=None, gate_expires_at=None)
                tx.emit(TaskApproved(**data, approvers=approvers))
            else:
                tx.emit(ApprovalRecorded(**data, approvals=len(approvers), required=required))
        return tx.task, True

    async def reject(
        self, task_id: str, reason: str | None, actor: str | None = None, *, principal: Principal | None = None
    ) -> TaskRecord:
        who = allowed(principal or unauthenticated(actor), Permission.DECIDE)
        async with self._commands.transaction(task_id) as tx:
            visible(tx.task, who)
            require_status(tx.task, TaskStatus.AWAITING_APPROVAL, "reject")
            _require_gate_roles(tx.task, who, "reject")
            version = tx.task.current_plan_version or 0
            tx.transition(
                TaskStatus.REJECTED,
                error={"code": "rejected", "message": reason or "rejected"},
                gate=None,
                gate_expires_at=None,
            )
            tx.add_approval(version, "rejected", who.subject, reason, actor_roles=who.sorted_roles)
            tx.emit(TaskRejected(plan_version=version, reason=reason, actor=who.subject))
        return tx.task

    async def request_revision(
        self, task_id: str, feedback: str, actor: str | None = None, *, principal: Principal | None = None
    ) -> TaskRecord:
        who = allowed(principal or unauthenticated(actor), Permission.DECIDE)
        if is_blank(feedback):
            raise InputValidationError("feedback must not be empty", details={"field": "feedback"})
        seen = await self._partial_approvals(await self.store.get_task(task_id))
        async with self._commands.transaction(task_id) as tx:
            visible(tx.task, who)
            require_status(tx.task, TaskStatus.AWAITING_APPROVAL, "request a revision")
            _require_gate_roles(tx.task, who, "request a revision")
            version = tx.task.current_plan_version or 0
            self._discard_partial(tx, version, seen)
            tx.transition(TaskStatus.QUEUED, revision_feedback=feedback, gate=None, gate_expires_at=None)
            tx.add_approval(version, "revision_requested", who.subject, feedback, actor_roles=who.sorted_roles)
            tx.emit(RevisionRequested(plan_version=version, feedback=feedback, actor=who.subject))
        return tx.task

    async def edit_plan(
        self,
        task_id: str,
        base_version: int,
        plan: Plan,
        actor: str | None = None,
        *,
        principal: Principal | None = None,
    ) -> TaskRecord:
        who = allowed(principal or unauthenticated(actor), Permission.DECIDE)
        actor = who.subject
        task = await self.get(task_id, who)  # a task the caller may not see is 404 before its plan is judged
        _require_gate_roles(task, who, "edit the plan")  # (and checked again in the transaction)
        profile = TaskProfile.of_task(task)  # the edit stays within the task's profile: its servers, its limit
        known = [name for name in self._known_tools() if profile.allows_server(name.partition(".")[0])]
        max_steps = profile.limit("max_steps_per_plan", self.limits.max_steps_per_plan)
        problems = check_plan(plan, known_tools=known, max_steps=max_steps)
        proposal = await self.governance.propose(task, plan, None, edited=True) if self.governance else None
        refused = proposal.refused() if proposal is not None else None
        if refused is not None:
            problems += [r.describe() for r in refused.refusals] or ["refused by the approval policy"]
        if problems:
            raise InputValidationError(
                "the edited plan is invalid: " + "; ".join(problems), details={"field": "plan", "problems": problems}
            )
        sticky = proposal is not None and proposal.sticky
        seen = await self._partial_approvals(task, sticky=sticky)
        if proposal is not None and sticky:
            proposal = proposal.carrying(seen.approvals, seen.versions, plan)
        replanned = await recovery.replan_context(self.store, task)  # the version that ran, if one did
        async with self._commands.transaction(task_id) as tx:
            visible(tx.task, who)
            require_status(tx.task, TaskStatus.AWAITING_APPROVAL, "edit the plan")
            _require_gate_roles(tx.task, who, "edit the plan")
            self._require_current(tx.task, base_version)
            self._discard_partial(tx, base_version, seen, plan)
            version = tx.add_plan_version(plan, f"{rules.OPERATOR}{actor}")
            if replanned is not None:  # completed steps the edit kept as they were do not run again
                recovery.keep_completed(tx, version, replanned[1], replanned[0], plan)
            tx.transition(TaskStatus.AWAITING_APPROVAL)
            tx.add_approval(base_version, "edited", actor, None, actor_roles=who.sorted_roles)
            tx.emit(
                PlanEdited(
                    plan_version=version,
                    based_on=base_version,
                    content_hash=plan.content_hash(),
                    actor=actor,
                    estimate=proposal.estimate if proposal is not None else None,
                )
            )
            if proposal is None:
                tx.emit(ApprovalRequired(plan_version=version))
            else:
                proposal.apply(tx, version, plan.content_hash())
        return tx.task

    async def cancel(
        self, task_id: str, reason: str | None = None, *, principal: Principal | None = None
    ) -> TaskRecord:
        """Cancel at once. Bumping the lease epoch fences off the worker; the runner also stops it."""
        who = allowed(principal, Permission.CANCEL)
        async with self._commands.transaction(task_id) as tx:
            task = visible(tx.task, who)
            if not who.may_cancel(task.submitted_by):
                raise ForbiddenError(
                    "a submitter may cancel only its own tasks", details={"required": Permission.CANCEL.value}
                )
            if is_terminal(task.status):
                raise InvalidStateError(
                    f"cannot cancel: task is already {task.status.value}",
                    details={"current_status": task.status.value},
                )
            cancel_in(tx, reason, who.subject)
        return tx.task

    # -- helpers --------------------------------------------------------------------------------

    async def _partial_approvals(self, task: TaskRecord, *, sticky: bool = False) -> rules.Snapshot:
        """Read, before a revision or an edit, the approvals that may be discarded (only when the
        task needs several: ``approvals.required`` or its policy gate's ``required``), or that may
        carry over to the new version (``sticky``: its policy rule is)."""
        several = int((task.gate or {}).get("required") or 0) > 1
        return await rules.decision_snapshot(
            self.store, self.approvals, task.id, None, with_approvals=several or sticky
        )

    def _discard_partial(self, tx: TaskTx, version: int, seen: rules.Snapshot, new_plan: Plan | None = None) -> None:
        """A new plan version is coming: approvals of ``version`` that did not reach the count the
        task needs (its policy gate's ``required``, else ``approvals.required``) no longer count
        (they named that version and its hash); say so. Under a ``sticky`` rule an edit that stays
        within ``version``'s scope keeps them, and nothing is said.
        ``seen`` was read before the transaction; approvals recorded since are named as well only
        if the read was current (it is informational: the count itself is per version and hash)."""
        gate = tx.task.gate or {}
        required = int(gate.get("required") or self.approvals.required)
        if required <= 1 or version <= 0:
            return
        base = next((v for v in seen.versions if v.version == version), None)
        if gate.get("sticky") and new_plan is not None and base is not None and is_scope_subset(new_plan, base.plan):
            return
        approvers = sorted(
            {r.actor for r in seen.approvals if r.decision == "approved" and r.plan_version == version and r.actor}
        )
        if approvers:
            tx.emit(ApprovalsDiscarded(plan_version=version, approvers=approvers))

    @staticmethod
    def _require_current(task: TaskRecord, plan_version: int) -> None:
        if task.current_plan_version != plan_version:
            raise StalePlanVersionError(
                f"plan version {plan_version} is not the current version ({task.current_plan_version})",
                details={"current_status": task.status.value, "current_plan_version": task.current_plan_version},
            )


def require_status(task: TaskRecord, status: TaskStatus, action: str) -> None:
    if task.status != status:
        raise InvalidStateError(
            f"cannot {action}: task is {task.status.value}, not {status.value}",
            details={"current_status": task.status.value, "current_plan_version": task.current_plan_version},
        )


def _require_gate_roles(task: TaskRecord, who: Principal, action: str) -> None:
    """The roles the policy rule that gated the plan names bind every decision on it (approve,
    reject, revise, edit), as a call gate's roles bind a deny as well as an approve."""
    gate = task.gate or {}
    require_roles(who, list(gate.get("roles") or ()), f"{action} (policy rule {gate.get('rule')!r})")


def cancel_in(tx: TaskTx, reason: str | None, actor: str | None, code: str = "cancelled") -> None:
    """Cancel the task in ``tx``: a new lease epoch fences off its worker; running steps are
    cancelled, pending ones skipped, and calls in flight, in doubt or at a gate cancelled."""
    task = tx.task
    tx.transition(
        TaskStatus.CANCELLED,
        lease_epoch=task.lease_epoch + 1,
        error={"code": code, "message": reason or "cancelled by request"},
        gate=None,
        gate_expires_at=None,
    )
    version = task.approved_plan_version
    if version is not None:
        tx.update_steps_where(version, {StepStatus.RUNNING}, status=StepStatus.CANCELLED, finished_at=tx.now)
        tx.update_steps_where(version, {StepStatus.PENDING}, status=StepStatus.SKIPPED)
    tx.update_tool_calls_where(
        {ToolCallStatus.STARTED, ToolCallStatus.IN_DOUBT, ToolCallStatus.AWAITING_DECISION},
        status=ToolCallStatus.CANCELLED,
        finished_at=tx.now,
    )
    tx.emit(TaskCancelled(reason=reason, previous_status=task.status, actor=actor))
