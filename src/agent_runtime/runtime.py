"""The runtime: every long-lived part of the service, built and torn down in one place.

:func:`build_runtime` builds each part once, in dependency order, with what it needs (no setters
afterwards): engine → event bus → store (tells the bus about commits) → metrics, tracing, tool
catalogue and pool, LLM clients → jobs → runner → task service (hands work off to the runner) →
webhook deliverer (woken by the bus's commit hook).
:func:`serve_background` starts the background work (tool discovery, the runner's claim loop, the
PostgreSQL listener, housekeeping, webhook delivery); :func:`drain_runtime` turns the replica
unready, ends SSE streams (``Runtime.shutdown_event``), hands work back and lets webhooks in flight
finish; :func:`stop_runtime` drains, then closes
tool servers and connections. ``create_app`` calls them from the
FastAPI lifespan; tests and benchmarks can use them directly.
"""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import anyio
import httpx2
import structlog
from anyio.abc import TaskGroup

from agent_runtime.errors import ConfigError, NotFoundError
from agent_runtime.llm.base import LLMClient
from agent_runtime.llm.factory import build_llm_client
from agent_runtime.llm.metered import MeteredLLM
from agent_runtime.llm.models import RoleModels
from agent_runtime.observability.metrics import Metrics
from agent_runtime.observability.tracing import Tracing, setup_tracing
from agent_runtime.policy.loader import PolicyHolder
from agent_runtime.profiles.loader import ProfileHolder
from agent_runtime.services.approvals import ApprovalQueries
from agent_runtime.services.artifacts import ArtifactStore
from agent_runtime.services.bus import EventBus
from agent_runtime.services.gates import Gates
from agent_runtime.services.governance import Governance
from agent_runtime.services.handoff import Commands
from agent_runtime.services.jobs import TaskJobs
from agent_runtime.services.runner import Runner
from agent_runtime.services.sessions import Sessions
from agent_runtime.services.tasks import TaskService
from agent_runtime.services.webhooks import WebhookDeliverer
from agent_runtime.settings import Settings
from agent_runtime.store import migrate
from agent_runtime.store.catalogue import CatalogueStore
from agent_runtime.store.engine import create_engine
from agent_runtime.store.outbox import Outbox
from agent_runtime.store.rows import utcnow
from agent_runtime.store.store import TaskStore, open_store
from agent_runtime.tools.catalog import ToolCatalog
from agent_runtime.tools.pool import ToolPool
from agent_runtime.tools.registry import load_registry

log = structlog.get_logger(__name__)


@dataclass
class Overrides:
    """Test and benchmark seams: replace what would otherwise be built from settings."""

    planner_llm: LLMClient | None = None
    executor_llm: LLMClient | None = None
    llm_http_client: httpx2.AsyncClient | None = None
    span_exporter: Any = None
    """An OpenTelemetry span exporter replacing OTLP (tests pass an in-memory one)."""


@dataclass
class Runtime:
    settings: Settings
    store: TaskStore
    bus: EventBus
    metrics: Metrics
    catalog: ToolCatalog
    pool: ToolPool
    tasks: TaskService
    runner: Runner
    planner_llm: LLMClient
    executor_llm: LLMClient
    tracing: Tracing
    policy: PolicyHolder
    gates: Gates
    approvals: ApprovalQueries
    webhooks: WebhookDeliverer
    profiles: ProfileHolder
    sessions: Sessions
    models: dict[str, RoleModels]
    shutdown_event: anyio.Event = field(default_factory=anyio.Event)
    _migrated: bool = False

    async def migrations_pending(self) -> bool:
        """True until the database reaches the code's newest migration (then cached: they never go back)."""
        if not self._migrated:
            self._migrated = not await migrate.pending(self.store.engine)
        return not self._migrated

    async def reload_tools(self) -> None:
        """Re-read ``tool_registry.yaml`` and refresh the catalogue; running tasks keep their servers."""
        registry = load_registry(self.settings.tools.registry_path)
        self.catalog.replace_registry(registry)
        self.pool.replace_registry(registry)
        await self.catalog.refresh()
        log.info("tool_registry_reloaded", servers=len(registry.enabled()))

    def reload_profiles(self) -> None:
        """Re-read the profiles file (checked against the registry now); an invalid one raises
        ``ProfilesError`` and the old profiles stay. Submitted tasks keep their snapshots."""
        found = self.profiles.reload()
        log.info("profiles_reloaded", path=str(self.profiles.path), profiles=sorted(found.profiles))

    def reload_policy(self) -> None:
        """Re-read the policy file; an invalid one raises ``PolicyError`` and the old policy stays."""
        policy = self.policy.reload()
        log.info("policy_reloaded", path=str(self.policy.path), plan_rules=len(policy.plan_rules),
                 call_rules=len(policy.call_rules))  # fmt: skip


async def build_runtime(settings: Settings, overrides: Overrides | None = None) -> Runtime:
    overrides = overrides or Overrides()
    engine = create_engine(settings.database)
    if settings.database.should_auto_migrate:
        revision = await migrate.upgrade(engine)
        log.info("migrations_applied", revision=revision)
    bus = EventBus()
    store = open_store(engine, bus)
    metrics = Metrics()
    tracing = setup_tracing(settings, span_exporter=overrides.span_exporter)
    registry = load_registry(settings.tools.registry_path)
    catalog = ToolCatalog(registry, settings.tools, CatalogueStore(store))
    pool = ToolPool(registry, settings.tools)
    planner_llm = _llm(settings, "planner", overrides, metrics)
    executor_llm = _llm(settings, "executor", overrides, metrics)
    policy = PolicyHolder(settings.policy.path)
    profiles = ProfileHolder(settings.profiles.path, lambda: [s.id for s in catalog.registry.servers])
    models = {role: _models(settings, role, llm, overrides, metrics)
              for role, llm in (("planner", planner_llm), ("executor", executor_llm))}  # fmt: skip
    sessions = Sessions(store, settings.sessions)
    governance = Governance(
        settings,
        policy,
        catalog.get,
        catalog.tools,
        planner_model=planner_llm.model,
        executor_model=executor_llm.model,
        history=store.step_history,
    )
    jobs = TaskJobs(store, settings, planner_llm, executor_llm, catalog, pool, metrics, tracing, governance,
                    models=lambda role, model: models[role].get(model), sessions=sessions)  # fmt: skip
    runner = Runner(
        store,
        bus,
        settings.runner,
        plan_job=jobs.plan,
        execute_job=jobs.execute,
        on_crash=jobs.fail_unexpected,
        metrics=metrics,
    )
    hand_off = runner if settings.runner.hand_off else None
    tasks = TaskService(
        store,
        settings.limits,
        lambda: [t.qualified_name for t in catalog.tools()],
        approvals=settings.approvals,
        hand_off=hand_off,
        governance=governance,
        profiles=lambda: profiles.profiles,
    )
    gates = Gates(store, Commands(store, hand_off), settings.approvals, catalog.get, governance)
    approvals = ApprovalQueries(store, settings.approvals, catalog.get)
    webhooks = WebhookDeliverer(Outbox(store), settings.webhooks, runner.owner)
    bus.on_commit(webhooks.events_committed)
    return Runtime(
        settings, store, bus, metrics, catalog, pool, tasks, runner, planner_llm, executor_llm, tracing,
        policy, gates, approvals, webhooks, profiles, sessions, models,
    )  # fmt: skip


async def preflight(settings: Settings) -> None:
    """Check what settings validation cannot (database URL, tool registry, LLM keys) before serving,
    so a bad configuration stops the process with one clear :class:`ConfigError`."""
    await create_engine(settings.database).dispose()
    registry = load_registry(settings.tools.registry_path)
    PolicyHolder(settings.policy.path)  # a malformed policy file stops the start with its errors
    ProfileHolder(settings.profiles.path, lambda: [s.id for s in registry.servers])  # likewise the profiles
    for role in ("planner", "executor"):
        await build_llm_client(getattr(settings.llm, role).resolved()).aclose()


def _models(settings: Settings, role: str, own: LLMClient, overrides: Overrides, metrics: Metrics) -> RoleModels:
    """The role's client, and on request (a profile's model) the same provider with another model."""
    if getattr(overrides, f"{role}_llm") is not None:
        return RoleModels(own)  # a test's client answers for every model
    resolved = getattr(settings.llm, role).resolved()

    def build(model: str) -> LLMClient:
        return build_llm_client(resolved.model_copy(update={"model": model}), http_client=overrides.llm_http_client,
                                wrap=lambda inner: MeteredLLM(inner, metrics))  # fmt: skip

    return RoleModels(own, build)


def _llm(settings: Settings, role: str, overrides: Overrides, metrics: Metrics) -> LLMClient:
    """The role's client, metered per model (a fallback's calls count under its own name)."""
    override: LLMClient | None = getattr(overrides, f"{role}_llm")
    if override is not None:
        return MeteredLLM(override, metrics)
    resolved = getattr(settings.llm, role).resolved()
    client = build_llm_client(
        resolved, http_client=overrides.llm_http_client, wrap=lambda inner: MeteredLLM(inner, metrics)
    )
    if resolved.provider == "offline":
        log.warning(
            "offline_test_model",
            role=role,
            message="no LLM key configured: using the OFFLINE TEST MODEL (offline-test); plans and results are "
            "synthetic. Set OPENAI_API_KEY or ANTHROPIC_API_KEY for a real model.",
        )
    else:
        log.info("llm_configured", role=role, provider=resolved.provider, model=resolved.model,
                 fallback=[f"{f.provider}/{f.model}" for f in resolved.fallback])  # fmt: skip
    return client


async def serve_background(runtime: Runtime, tg: TaskGroup) -> None:
    """Start the background work: tool discovery, the runner, the PG listener, housekeeping.

    Returns without waiting for any tool server: the catalogue serves the stored outcome of each
    entry's last discovery (``tool_catalogue``) and a discovery of every server runs in the
    background. The runner starts claiming once no server is pending (an entry with nothing stored
    waits for its first discovery, ok or failed), so no plan is made without its tools."""
    await runtime.pool.start()
    restored = await runtime.catalog.restore()
    log.info("tool_catalogue_restored", servers=restored, pending=runtime.catalog.pending())
    tg.start_soon(_discover_tools, runtime)
    tg.start_soon(_run_when_tools_known, runtime, tg)
    if runtime.store.is_postgres:
        from agent_runtime.services.pg_listener import listen_forever

        tg.start_soon(
            listen_forever, runtime.settings.database.url, runtime.bus, runtime.store.events_after, runtime.store.origin
        )
    tg.start_soon(_housekeeping, runtime)
    tg.start_soon(_expire_gates, runtime)
    tg.start_soon(runtime.webhooks.run)
    tg.start_soon(_reload_on_sighup, runtime)
    for llm in (runtime.planner_llm, runtime.executor_llm):
        tg.start_soon(llm.warm_up)  # import the provider SDK while serving, not before


async def _discover_tools(runtime: Runtime) -> None:
    """Refresh the whole catalogue now (stored lists may be stale), then every refresh period."""
    await runtime.catalog.refresh()
    for server_id, status in runtime.catalog.status().items():
        if not status.ok:
            log.warning("tool_server_unavailable", server=server_id, error=status.error)
    await runtime.catalog.refresh_forever()


async def _run_when_tools_known(runtime: Runtime, tg: TaskGroup) -> None:
    await runtime.catalog.wait_settled()
    await runtime.runner.run(tg)


async def drain_runtime(runtime: Runtime) -> None:
    """Drain: readiness turns unready and SSE streams close (clients reconnect to another replica),
    claiming stops, in-flight work gets ``server.shutdown_grace_seconds`` to finish, then is cancelled
    and its leases released so another replica resumes it at once."""
    if runtime.runner.draining:
        return
    runtime.runner.begin_drain()
    runtime.shutdown_event.set()
    runtime.bus.close_all()
    grace = runtime.settings.server.shutdown_grace_seconds
    async with anyio.create_task_group() as tg:  # webhooks in flight get the same grace, side by side
        tg.start_soon(runtime.webhooks.stop, grace)
        await runtime.runner.drain(grace)


async def stop_runtime(runtime: Runtime) -> None:
    """Drain (if not done yet), then stop tool servers and close connections."""
    await drain_runtime(runtime)
    with anyio.CancelScope(shield=True):
        await runtime.pool.aclose()
        await runtime.planner_llm.aclose()
        await runtime.executor_llm.aclose()
        for models in runtime.models.values():
            await models.aclose()
        await runtime.store.aclose()
        await anyio.to_thread.run_sync(runtime.tracing.shutdown)


async def _housekeeping(runtime: Runtime) -> None:
    retention = runtime.settings.retention
    if retention.finished_task_max_age_days is None:
        return
    while True:
        if await runtime.store.try_housekeeping_lease(
            "retention", runtime.runner.owner, retention.sweep_interval_seconds
        ):
            await prune(runtime, retention.finished_task_max_age_days)
        await anyio.sleep(retention.sweep_interval_seconds)


async def prune(runtime: Runtime, max_age_days: float) -> tuple[int, int]:
    """One retention round: delete tasks finished more than ``max_age_days`` ago, then the kept
    artifacts of every task whose rows are gone (these, and any a crash left behind). Returns
    (tasks, artifact directories) removed."""
    pruned = await runtime.store.prune_finished(utcnow() - timedelta(days=max_age_days))
    artifacts = ArtifactStore(runtime.settings.artifacts)
    files = await artifacts.sweep_orphans(lambda task_id: _task_exists(runtime.store, task_id))
    if pruned or files:
        log.info("retention_pruned", tasks=pruned, artifact_dirs=files)
    return pruned, files


async def _task_exists(store: TaskStore, task_id: str) -> bool:
    try:
        await store.get_task(task_id)
    except NotFoundError:
        return False
    return True


async def _expire_gates(runtime: Runtime) -> None:
    """Fire due approval expiries (plan approvals, call gates). Every replica sweeps; the
    transaction that acts clears the timer, so each fires once."""
    while True:
        try:
            await runtime.gates.expire_due()
        except Exception as exc:  # the database is away: try again next round
            log.warning("gate_expiry_failed", error=f"{type(exc).__name__}: {exc}")
        await anyio.sleep(runtime.settings.policy.expiry_check_seconds)


async def _reload_on_sighup(runtime: Runtime) -> None:
    if threading.current_thread() is not threading.main_thread():
        return  # signals reach only the main thread's loop (an embedding app, tests in a worker thread)
    try:
        signals = anyio.open_signal_receiver(signal.SIGHUP)
    except (NotImplementedError, ValueError):  # not supported here
        return
    with signals as received:
        async for _ in received:
            try:
                await runtime.reload_tools()
            except ConfigError as exc:
                log.error("tool_registry_reload_failed", error=exc.message)
            try:
                runtime.reload_policy()
            except ConfigError as exc:
                log.error("policy_reload_failed", error=exc.message)
            try:
                runtime.reload_profiles()
            except ConfigError as exc:
                log.error("profiles_reload_failed", error=exc.message)
