"""What a worker does with a claimed task: plan it, or execute its approved plan.

Both jobs write only through fenced transactions (``store.transaction(task_id, lease)``): a worker
that lost its lease cannot change the task. Planning is safe to redo after a crash (it has no side
effects); execution resumes from the database: completed steps are skipped, and calls that were in
flight are settled as in-doubt (see ``agents.executor``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import anyio
import structlog

from agent_runtime.agents.execution import BudgetExceededError, CallGatedError, ExecutorLimits, InDoubtError, StepTools
from agent_runtime.agents.executor import ExecutorAgent
from agent_runtime.agents.failure import FailurePolicies, ReplanRequested, Verifier, skipped_note
from agent_runtime.agents.planner import PlannerAgent
from agent_runtime.agents.replan import replan
from agent_runtime.domain.events import (
    ApprovalRequired,
    ErrorBody,
    ExecutionStarted,
    PlanInvalid,
    PlanningStarted,
    PlanProposed,
    TaskCompleted,
    TaskFailed,
    TaskResumed,
    ToolCallInDoubt,
)
from agent_runtime.domain.plan import Plan
from agent_runtime.domain.records import Lease, TaskRecord, ToolCallRecord
from agent_runtime.domain.states import StepStatus, TaskStatus, ToolCallStatus, is_terminal
from agent_runtime.errors import LeaseLostError, PlanInvalidError, ServiceError
from agent_runtime.llm.base import LLMClient, ToolSpec
from agent_runtime.observability.metrics import Metrics
from agent_runtime.observability.tracing import Tracing
from agent_runtime.profiles.model import TaskProfile
from agent_runtime.services import pauses, recovery
from agent_runtime.services.artifacts import ArtifactStore
from agent_runtime.services.governance import Governance
from agent_runtime.services.journal import StoreJournal
from agent_runtime.services.sessions import Sessions
from agent_runtime.services.usage import PlannerSpend
from agent_runtime.settings import Settings
from agent_runtime.store.store import TaskStore
from agent_runtime.store.tx import TaskTx
from agent_runtime.tools.base import ToolInfo
from agent_runtime.tools.workspace import Workspaces

log = structlog.get_logger(__name__)


class Catalog(Protocol):
    def tools(self) -> list[ToolInfo]: ...
    def get(self, qualified: str) -> ToolInfo | None: ...


class Pool(Protocol):
    workspaces: Workspaces

    def open_task(
        self,
        task_id: str,
        server_ids: set[str],
        allowed_tools: set[str],
        workspace: Path,
        env: dict[str, str] | None = None,
    ) -> AbstractAsyncContextManager[StepTools]: ...


def tool_spec(info: ToolInfo) -> ToolSpec:
    return ToolSpec(name=info.qualified_name, description=info.description, input_schema=info.input_schema)


@dataclass
class TaskJobs:
    store: TaskStore
    settings: Settings
    planner_llm: LLMClient
    executor_llm: LLMClient
    catalog: Catalog
    pool: Pool
    metrics: Metrics | None = None
    tracing: Tracing | None = None
    governance: Governance | None = None
    """Approval policy, budgets and prices (None: no policy, no budget, costs unknown)."""
    models: Callable[[str, str | None], LLMClient] | None = None
    """(role, model) -> that role's client for a profile's model (None: the role's own client)."""
    sessions: Sessions | None = None
    """The summary of a task's session (None: no summaries)."""

    def _llm(self, role: str, profile: TaskProfile) -> LLMClient:
        own = self.planner_llm if role == "planner" else self.executor_llm
        model = getattr(profile.profile, role).model
        return self.models(role, model) if self.models is not None and model is not None else own

    async def _history(self, task: TaskRecord) -> str | None:
        return await self.sessions.summary(task) if self.sessions is not None else None

    def _span(self, name: str, **attributes: str | int | None) -> AbstractContextManager[object]:
        return self.tracing.span(name, **attributes) if self.tracing is not None else nullcontext()

    # -- planning -------------------------------------------------------------------------------

    async def plan(self, lease: Lease) -> None:
        with self._span("agent_runtime.plan", task_id=lease.task_id, epoch=lease.epoch):
            await self._plan(lease)

    async def _plan(self, lease: Lease) -> None:
        started = time.perf_counter()
        async with self.store.transaction(lease.task_id, lease) as tx:
            if tx.task.status == TaskStatus.QUEUED:
                tx.transition(TaskStatus.PLANNING)
            else:
                tx.emit(TaskResumed(phase="planning", worker=lease.owner))
            tx.emit(PlanningStarted(revision=tx.task.revision_feedback is not None))
            task = tx.task
        previous: Plan | None = None
        replanning = await recovery.replan_context(self.store, task)  # a step failed: plan what is left
        if task.revision_feedback and task.current_plan_version and replanning is None:
            previous = (await self.store.plan_version(task.id, task.current_plan_version)).plan
        try:
            profile = TaskProfile.of_task(task)
        except ServiceError as exc:
            await self._fail(lease, exc)
            return
        llm = self._llm("planner", profile)
        max_steps = profile.limit("max_steps_per_plan", self.settings.limits.max_steps_per_plan)
        planner = PlannerAgent(llm, max_steps=max_steps, system=profile.profile.planner.system_prompt)
        specs = [tool_spec(t) for t in self.catalog.tools() if profile.allows_server(t.server_id)]
        gov = self.governance

        async def on_invalid(problems: list[str]) -> None:
            async with self.store.transaction(lease.task_id, lease) as tx:
                spend.write(tx)
                tx.emit(PlanInvalid(problems=problems))

        check = gov.refusals(task) if gov is not None else None
        # A revision or a replan is held to the task's budget; a first plan is not: the policy
        # decides the budget with it (a rule may set one). Either way every call is counted.
        spend = PlannerSpend(task.usage, task.budget, gov.price if gov is not None else None, llm.model)
        try:
            if replanning is not None:
                version = (task.current_plan_version or 0) + 1
                outcome = await replan(planner, task.prompt, specs, replanning[0], version=version,
                                       feedback=task.revision_feedback, on_invalid=on_invalid, check=check,
                                       meter=spend)  # fmt: skip
            else:
                outcome = await planner.plan(
                    task.prompt,
                    specs,
                    feedback=task.revision_feedback,
                    previous=previous,
                    on_invalid=on_invalid,
                    check=check,
                    history=await self._history(task),
                    meter=spend,
                )
        except LeaseLostError:
            raise
        except BudgetExceededError as exc:
            async with self.store.transaction(lease.task_id, lease) as tx:
                spend.write(tx)
                pauses.budget_gate(exc, phase="planning")(tx)
            return
        except ServiceError as exc:
            await self._fail(lease, exc, spend=spend)
            return
        offline = llm.provider == "offline"
        proposal = await gov.propose(task, outcome.plan, outcome.usage) if gov is not None else None
        refused = proposal.refused() if proposal is not None else None
        if refused is not None:  # the policy changed (a reload) since the planner's check
            await self._fail(lease, PlanInvalidError(refused.message(), problems=[refused.message()]), spend=spend)
            return
        if proposal is not None and proposal.sticky:  # a replan or revision may keep an earlier approval
            earlier = await self.store.plan_versions(task.id)
            proposal = proposal.carrying(await self.store.approvals(task.id), earlier, outcome.plan)
        async with self.store.transaction(lease.task_id, lease) as tx:
            version = tx.add_plan_version(outcome.plan, outcome.author)
            if replanning is not None:
                recovery.keep_completed(tx, version, replanning[1], replanning[0], outcome.plan)
            tx.transition(TaskStatus.AWAITING_APPROVAL, revision_feedback=None)
            tx.emit(
                PlanProposed(
                    plan_version=version,
                    content_hash=outcome.plan.content_hash(),
                    author=outcome.author,
                    offline_test=offline,
                    attempts=outcome.attempts,
                    plan=outcome.plan,
                    estimate=proposal.estimate if proposal is not None else None,
                    profile=profile.name,
                    profile_hash=profile.hash,
                )
            )
            spend.write(tx)
            if proposal is None:
                tx.emit(ApprovalRequired(plan_version=version))
            else:
                proposal.apply(tx, version, outcome.plan.content_hash())
        if self.metrics is not None:
            self.metrics.observe_planning(time.perf_counter() - started, "proposed")

    # -- execution ------------------------------------------------------------------------------

    async def execute(self, lease: Lease) -> None:
        with self._span("agent_runtime.execute", task_id=lease.task_id, epoch=lease.epoch):
            await self._execute(lease)

    async def _execute(self, lease: Lease) -> None:
        started = time.perf_counter()
        task, record, steps, calls = await self.store.execution_state(lease.task_id)
        version = task.approved_plan_version
        if version is None or record is None:
            await self._fail(lease, ServiceError("approved task has no approved plan version"))
            return
        gov = self.governance
        try:
            profile = TaskProfile.of_task(task)
        except ServiceError as exc:
            await self._fail(lease, exc, version=version)
            return
        llm = self._llm("executor", profile)
        journal = StoreJournal(
            self.store,
            lease,
            version,
            self.metrics,
            linger=self.settings.runner.journal_linger_ms / 1000,
            usage=task.usage,
            budget=task.budget,
            price=gov.price if gov is not None else None,
            model=llm.model,
            attempts={s.step_id: s.started_at for s in steps if s.status == StepStatus.RUNNING},
        )
        resumed = any(s.status != StepStatus.PENDING for s in steps)

        def start(tx: TaskTx) -> None:
            if tx.task.status == TaskStatus.APPROVED:
                tx.transition(TaskStatus.EXECUTING)
            if resumed or lease.status == TaskStatus.EXECUTING:
                tx.emit(TaskResumed(phase="executing", worker=lease.owner))
            else:
                tx.emit(ExecutionStarted(plan_version=version, content_hash=record.content_hash))
            self._mark_in_doubt(tx, calls)

        # Group-committed with the first step's records (see ``services.journal``).
        journal.stage(start)
        status = {s.step_id: s.status for s in steps}
        outputs = {s.step_id: s.output or "" for s in steps if s.status == StepStatus.COMPLETED}
        outputs |= {s.step_id: skipped_note(s.step_id, str((s.error or {}).get("message")))
                    for s in steps if s.status == StepStatus.SKIPPED}  # fmt: skip
        plan = record.plan
        # A takeover (or a restart after a pause) reads back the attempts its failure policies made.
        again = resumed or lease.status == TaskStatus.EXECUTING
        prior = await recovery.prior_attempts_of(self.store, task.id, steps) if again else {}
        failures = FailurePolicies(plan, recovery.FailureRecords(journal), prior)
        verdict: dict[str, object] = {}
        verify = plan.verify if plan.verify is not None else self.settings.limits.verify
        verifier = recovery.verifier(llm, journal, verdict) if verify else None
        limits = self.settings.limits
        executor = ExecutorAgent(
            llm,
            specs=self._specs,
            safe_to_repeat=self._safe_to_repeat,
            span=self._span,
            check_call=gov.call_policy(task) if gov is not None else None,
            limits=ExecutorLimits(
                max_turns=profile.limit("max_turns_per_step", limits.max_turns_per_step),
                max_tool_calls=profile.limit("max_tool_calls_per_step", limits.max_tool_calls_per_step),
                max_parallel_steps=profile.limit("max_parallel_steps", limits.max_parallel_steps),
            ),
            system=profile.profile.executor.system_prompt,
            history=await self._history(task),
        )

        async def complete(summary: str) -> None:
            # Committed while the task's servers are still up (stopping them takes a while), in the
            # same transaction as the last step's records.
            kept = await ArtifactStore(self.settings.artifacts).collect(task.id, self.pool.workspaces.path(task.id))

            def finish(tx: TaskTx) -> None:
                # What it cost beside what the approver was told it would (the estimate's quality).
                result = {"summary": summary, "outputs": outputs, "usage": journal.usage, "estimate": task.estimate,
                          **({"verification": verdict} if verdict else {}), **kept}  # fmt: skip
                tx.transition(TaskStatus.COMPLETED, result=result)
                tx.emit(TaskCompleted(summary=summary))

            await journal.commit(finish)
            if self.metrics is not None:
                self.metrics.observe_execution(time.perf_counter() - started, "completed")

        async with journal.running():
            try:
                await self._run_in_workspace(
                    executor, task.id, task.prompt, plan, status, outputs, journal, complete, failures, verifier
                )
            except InDoubtError as exc:
                await journal.commit(pauses.in_doubt(exc))
            except CallGatedError as exc:
                await journal.commit(pauses.call_gate(exc))
            except BudgetExceededError as exc:
                await journal.commit(pauses.budget_gate(exc))
            except LeaseLostError:
                raise
            except ReplanRequested as exc:
                await journal.flush()
                await self._replan(lease, exc, version)
            except ServiceError as exc:
                await journal.flush()
                await self._fail(lease, exc, version=version)

    async def _replan(self, lease: Lease, exc: ReplanRequested, version: int) -> None:
        """Back to the planner for the steps not yet completed, at most ``limits.max_replans`` times."""
        done, most = await recovery.replans_so_far(self.store, lease.task_id), self.settings.limits.max_replans
        if done >= most:
            message = (
                f"step {exc.step_id} failed and the task was already replanned {done} time(s) (limits.max_replans)"
            )
            error = ServiceError(f"{message}: {exc.message}", details={**exc.details, "replans": done})
            error.code = exc.code
            await self._fail(lease, error, version=version)
            return
        async with self.store.transaction(lease.task_id, lease) as tx:
            recovery.requeue(exc, version, done + 1, most)(tx)

    async def fail_unexpected(self, lease: Lease, exc: BaseException) -> None:
        """A bug, not a modelled failure: fail the task clearly rather than retry it forever.
        If even that cannot be written (database down), the lease expires and the task is retried."""
        while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
            exc = exc.exceptions[0]  # name the error itself, not the task group that carried it
        try:
            version = (await self.store.get_task(lease.task_id)).approved_plan_version
            await self._fail(lease, ServiceError(f"internal error: {type(exc).__name__}"), version=version)
        except Exception as inner:
            log.warning("fail_unexpected_failed", error=f"{type(inner).__name__}: {inner}")

    def _mark_in_doubt(self, tx: TaskTx, calls: list[ToolCallRecord]) -> None:
        """Calls left STARTED by an earlier worker have no recorded result: they are in doubt.
        (Our claim bumped the epoch, so that worker can no longer add or finish any call.)"""
        for call in calls:
            if call.status == ToolCallStatus.STARTED:
                tx.update_tool_call(call.id, status=ToolCallStatus.IN_DOUBT)
                info = self.catalog.get(call.tool_name)
                tx.emit(
                    ToolCallInDoubt(
                        call_id=call.id,
                        step_id=call.step_id,
                        tool=call.tool_name,
                        safe_to_repeat=bool(info and info.safe_to_repeat),
                    )
                )

    def _specs(self, names: list[str]) -> list[ToolSpec]:
        return [tool_spec(info) for name in names if (info := self.catalog.get(name)) is not None]

    def _safe_to_repeat(self, name: str) -> bool:
        info = self.catalog.get(name)
        return bool(info and info.safe_to_repeat)

    async def _fail(
        self, lease: Lease, exc: ServiceError, *, version: int | None = None, spend: PlannerSpend | None = None
    ) -> None:
        error = {"code": exc.code.value, "message": exc.message, **({"details": exc.details} if exc.details else {})}
        async with self.store.transaction(lease.task_id, lease) as tx:
            if is_terminal(tx.task.status):
                return
            if spend is not None:  # what the planner spent before it failed
                spend.write(tx)
            if version is not None:
                tx.update_steps_where(version, {StepStatus.PENDING}, status=StepStatus.SKIPPED)
                tx.update_steps_where(
                    version, {StepStatus.RUNNING}, status=StepStatus.FAILED, error=error, finished_at=tx.now
                )
            tx.transition(TaskStatus.FAILED, error=error)
            tx.emit(TaskFailed(error=ErrorBody.model_validate(error)))
        if version is not None:
            await self.pool.workspaces.remove(lease.task_id)
            if self.metrics is not None:
                self.metrics.observe_execution(0.0, "failed")

    async def _run_in_workspace(
        self,
        executor: ExecutorAgent,
        task_id: str,
        prompt: str,
        plan: Plan,
        status: dict[str, StepStatus],
        outputs: dict[str, str],
        journal: StoreJournal,
        complete: Callable[[str], Awaitable[None]],
        failures: FailurePolicies,
        verify: Verifier | None,
    ) -> None:
        remaining = [s for s in plan.steps if status.get(s.id) != StepStatus.COMPLETED]
        servers = {name.partition(".")[0] for s in remaining for name in s.tools}
        workspace = self.pool.workspaces.create(task_id)
        completed = False
        try:
            async with self.pool.open_task(task_id, servers, plan.all_tools(), workspace) as tools:
                summary = await executor.run(
                    prompt=prompt, plan=plan, step_status=status, outputs=outputs, tools=tools, journal=journal,
                    failures=failures, verify=verify,
                )  # fmt: skip
                await complete(summary)
                completed = True
        finally:
            with anyio.CancelScope(shield=True):
                # Finished for good (completed, cancelled, failed): the workspace and server logs go,
                # unless kept by policy. Needs-attention and handed-back tasks keep theirs.
                if completed or is_terminal((await self.store.get_task(task_id)).status):
                    await self.pool.workspaces.remove(task_id)
