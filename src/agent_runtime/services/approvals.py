"""Approval integrity rules, the approval trail and the approver's inbox.

The anchors are deployment tools, not agent frameworks: Atlantis refuses an apply when the plan
changed since it was approved, wants an approver other than the author, and drops approvals when
a new plan runs; GitHub environments can forbid self-review. Here:

* an approval names a plan version (and may name its content hash); it counts for that version
  and hash only, once per approver, so it can never approve a later or different plan;
* the submitter may not approve its own task, nor may the operator who wrote the current plan
  version by editing it (``approvals.allow_self_approval: false``, the default): 403
  ``self_approval_forbidden``;
* ``approvals.required: N`` needs N distinct approvers of the same version; approvals of a version
  that a revision or an edit replaced are discarded (``approvals_discarded``).

With authentication disabled nobody is identified, so the people-comparing rules do not apply.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from agent_runtime.domain.identity import Permission, Principal
from agent_runtime.domain.plan import Plan
from agent_runtime.domain.records import ApprovalRecord, PlanVersionRecord, TaskRecord, ToolCallRecord
from agent_runtime.domain.states import TaskStatus, ToolCallStatus
from agent_runtime.errors import ContentHashMismatchError, ForbiddenError, NotFoundError, SelfApprovalForbiddenError
from agent_runtime.policy.engine import ToolView
from agent_runtime.policy.sticky import is_scope_subset
from agent_runtime.settings import ApprovalSettings
from agent_runtime.store.store import TaskStore
from agent_runtime.tools.base import ToolInfo

OPERATOR = "operator:"
"""Prefix of a plan version's author when an operator wrote it by editing."""
POLICY = "policy:"
"""Prefix of the actor of an approval the approval policy recorded (``policy:<rule id>``)."""
EXCERPT = 200


def refuse_submitter(task: TaskRecord, who: Principal, settings: ApprovalSettings) -> None:
    if who.authenticated and not settings.allow_self_approval and task.submitted_by == who.subject:
        raise SelfApprovalForbiddenError(
            f"{who.subject!r} submitted this task and may not approve it (approvals.allow_self_approval is false)",
            details={"task_id": task.id, "submitted_by": task.submitted_by},
        )


def refuse_author(task: TaskRecord, version: PlanVersionRecord, who: Principal, settings: ApprovalSettings) -> None:
    if who.authenticated and not settings.allow_self_approval and version.author == f"{OPERATOR}{who.subject}":
        raise SelfApprovalForbiddenError(
            f"{who.subject!r} wrote plan version {version.version} and may not approve it "
            "(approvals.allow_self_approval is false)",
            details={"task_id": task.id, "plan_version": version.version, "author": version.author},
        )


def check_hash(task: TaskRecord, version: PlanVersionRecord, content_hash: str | None) -> None:
    if content_hash is not None and content_hash != version.content_hash:
        raise ContentHashMismatchError(
            f"plan version {version.version} has content hash {version.content_hash}, not {content_hash}",
            details={
                "field": "content_hash",
                "current_status": task.status.value,
                "current_plan_version": task.current_plan_version,
                "content_hash": version.content_hash,
            },
        )


def approvers_of(
    records: Sequence[ApprovalRecord],
    version: PlanVersionRecord,
    earlier: Sequence[PlanVersionRecord] = (),
    roles: Collection[str] = (),
) -> list[str]:
    """Distinct subjects whose approvals count for ``version`` (same version number and hash).
    ``earlier``: with a ``sticky`` policy rule, the task's other versions; an approval of one of
    them counts too when ``version``'s steps and tools are a subset of it (Atlantis' rule).
    ``roles``: the gate's roles (see :func:`carried_approvers`)."""
    counted = {version.version: version.content_hash} | _covering(version.plan, earlier, skip=version.version)
    return _approvers(records, counted, roles)


def carried_approvers(
    records: Sequence[ApprovalRecord], plan: Plan, earlier: Sequence[PlanVersionRecord], roles: Collection[str] = ()
) -> list[str]:
    """Under a ``sticky`` rule, before a new version of ``plan`` is written: the people whose
    approval of an earlier version covers it (its steps and tools a subset of that version's).
    Only a person's approval carries (never ``policy:<rule>``), and with ``roles`` only one given
    while the approver held one of them."""
    return _approvers(records, _covering(plan, earlier), roles)


def _covering(plan: Plan, earlier: Sequence[PlanVersionRecord], skip: int | None = None) -> dict[int, str]:
    """Version -> hash of the ``earlier`` versions whose scope covers ``plan``."""
    return {v.version: v.content_hash for v in earlier if v.version != skip and is_scope_subset(plan, v.plan)}


def _approvers(records: Sequence[ApprovalRecord], counted: dict[int, str], roles: Collection[str]) -> list[str]:
    out: list[str] = []
    for r in records:
        if (
            r.decision == "approved"
            and r.plan_version in counted
            and r.content_hash in (None, counted[r.plan_version])
            and r.actor is not None
            and not r.actor.startswith(POLICY)
            and (not roles or r.actor_roles is None or bool(set(roles) & set(r.actor_roles)))
            and r.actor not in out
        ):
            out.append(r.actor)
    return out


InboxKind = Literal["plan", "call", "in_doubt", "budget"]


@dataclass(frozen=True, slots=True)
class InboxItem:
    task: TaskRecord
    plan: PlanVersionRecord
    approvals: int
    required: int
    kind: InboxKind = "plan"
    call: ToolCallRecord | None = None
    """kind ``call`` or ``in_doubt``: the call waiting for a decision."""
    risky: dict[str, list[str]] = field(default_factory=dict)
    """Risk flag (``destructive``, ``open_world``) -> the plan's tools that carry it."""

    @property
    def prompt_excerpt(self) -> str:
        p = self.task.prompt
        return p if len(p) <= EXCERPT else p[: EXCERPT - 1] + "…"

    @property
    def tools(self) -> list[str]:
        return sorted({tool for step in self.plan.plan.steps for tool in step.tools})

    @property
    def waiting_since(self) -> datetime:
        return self.plan.created_at if self.kind == "plan" else self.task.updated_at


def risk_flags(tools: list[str], info: Callable[[str], ToolInfo | None]) -> dict[str, list[str]]:
    """Which tools are destructive or open-world, as the policy sees them (``ToolView``: MCP hints
    are untrusted and default to both; the registry's overrides win)."""
    flags: dict[str, list[str]] = {}
    for name in tools:
        view = ToolView.of(name, info(name))
        for flag, on in (("destructive", view.destructive), ("open_world", view.open_world)):
            if on:
                flags.setdefault(flag, []).append(name)
    return flags


class ApprovalQueries:
    """The approval trail of a task, and what waits for a principal's decision."""

    def __init__(
        self, store: TaskStore, settings: ApprovalSettings, tool: Callable[[str], ToolInfo | None] | None = None
    ) -> None:
        self.store = store
        self.settings = settings
        self._tool = tool or (lambda _name: None)

    async def trail(self, task: TaskRecord) -> list[ApprovalRecord]:
        """Every decision on ``task`` (approve, reject, revision, edit), oldest first. The caller
        has already checked that the principal may see ``task``."""
        return await self.store.approvals(task.id)

    async def inbox(self, who: Principal, *, limit: int, cursor: str | None) -> tuple[list[InboxItem], str | None]:
        """What waits for ``who``'s decision in its tenant, newest task first: plan versions to
        approve (that ``who`` may approve and has not yet approved), tool calls at a policy gate,
        in-doubt calls, and tasks paused by their budget. ``cursor``: the last task id of the
        previous page."""
        if not who.may(Permission.DECIDE):
            raise ForbiddenError("the inbox is for approvers", details={"required": Permission.DECIDE.value})
        items: list[InboxItem] = []
        scan = cursor
        while True:
            page, more = await self.store.list_tasks(
                status=(TaskStatus.AWAITING_APPROVAL, TaskStatus.NEEDS_ATTENTION),
                limit=limit,
                cursor=scan,
                tenant=who.tenant if who.authenticated else None,
            )
            for task in page:
                scan = task.id
                item = await self._item(task, who)
                if item is not None:
                    items.append(item)
                    if len(items) == limit:
                        return items, scan
            if more is None:
                return items, None

    async def _item(self, task: TaskRecord, who: Principal) -> InboxItem | None:
        gate = task.gate or {}
        roles = set(gate.get("roles") or ())
        if roles and who.authenticated and not roles & {r.value for r in who.roles}:
            return None  # the rule names roles this principal does not hold
        if task.status == TaskStatus.NEEDS_ATTENTION:
            return await self._attention_item(task, gate)
        if task.current_plan_version is None:
            return None
        if who.authenticated and not self.settings.allow_self_approval and task.submitted_by == who.subject:
            return None
        plan = await self.store.plan_version(task.id, task.current_plan_version)
        if who.authenticated and not self.settings.allow_self_approval and plan.author == f"{OPERATOR}{who.subject}":
            return None
        earlier = await self.store.plan_versions(task.id) if gate.get("sticky") else []
        approvers = approvers_of(await self.store.approvals(task.id), plan, earlier, roles)
        if who.authenticated and who.subject in approvers:
            return None
        required = int(gate.get("required") or self.settings.required)
        return InboxItem(
            task=task,
            plan=plan,
            approvals=len(approvers),
            required=required,
            risky=risk_flags(sorted(plan.plan.all_tools()), self._tool),
        )

    async def _attention_item(self, task: TaskRecord, gate: dict[str, Any]) -> InboxItem | None:
        # (A budget spent while planning a revision: the version it revises, never approved.)
        version = task.approved_plan_version or task.current_plan_version
        if version is None:
            return None
        plan = await self.store.plan_version(task.id, version)
        risky = risk_flags(sorted(plan.plan.all_tools()), self._tool)
        if gate.get("kind") == "budget":
            return InboxItem(task=task, plan=plan, approvals=0, required=1, kind="budget", risky=risky)
        waiting = (ToolCallStatus.AWAITING_DECISION, ToolCallStatus.IN_DOUBT)
        calls = [c for c in await self.store.tool_calls(task.id) if c.status in waiting]
        # The call the gate names (parallel steps may have stopped more than one; they come in turn).
        call = next((c for c in calls if c.id == gate.get("call_id")), calls[0] if calls else None)
        if call is None:
            return None
        kind: InboxKind = "call" if call.status == ToolCallStatus.AWAITING_DECISION else "in_doubt"
        return InboxItem(task=task, plan=plan, approvals=0, required=1, kind=kind, call=call, risky=risky)


MAX_DECISION_RETRIES = 8
"""How often a decision re-reads after another decision committed in between."""


class Raced(Exception):
    """Another decision committed between a command's reads and its transaction: read again
    (``with_approvals``: with the approvals, which the policy's gate turned out to need)."""

    def __init__(self, *, with_approvals: bool = False) -> None:
        super().__init__()
        self.with_approvals = with_approvals


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a decision read before its transaction (see ``TaskService.approve``)."""

    last_seq: int | None
    version: PlanVersionRecord | None
    approvals: list[ApprovalRecord]
    versions: list[PlanVersionRecord] = field(default_factory=list)
    """Every plan version of the task (read with the approvals, for ``sticky`` rules)."""


async def decision_snapshot(
    store: TaskStore,
    settings: ApprovalSettings,
    task_id: str,
    plan_version: int | None,
    *,
    with_approvals: bool = False,
) -> Snapshot:
    """Read what a decision needs *before* its transaction: a read inside it would need a second
    pooled connection while the first waits on the task's row lock. The approvals are only read
    (and checked against ``last_seq`` in the transaction) when several approvers are required
    (``approvals.required``, or the policy rule that gated the task: ``with_approvals``)."""
    version: PlanVersionRecord | None = None
    if plan_version is not None:
        try:
            version = await store.plan_version(task_id, plan_version)
        except NotFoundError:
            version = None  # the transaction reports it (as stale, or as a task it cannot see)
    if settings.required <= 1 and not with_approvals:
        return Snapshot(None, version, [])
    task = await store.get_task(task_id)
    approvals = list(await store.approvals(task_id))
    return Snapshot(task.last_seq, version, approvals, await store.plan_versions(task_id))
