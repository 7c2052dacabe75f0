"""Sections for the service itself: HTTP server, database, limits, runner, tools, artifacts,
retention, observability, CORS."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    model_validator,
)

from agent_runtime.settings.base import Section


class ServerSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    environment: Literal["development", "production"] = "development"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    log_payloads: bool = False
    """Log prompts and tool arguments. Off by default: they may hold secrets or personal data."""
    access_log: bool = False
    """One ``http_request`` line per request (method, path, status, duration_ms, request_id)."""
    sse_ping_seconds: float = Field(default=15.0, gt=0)
    shutdown_grace_seconds: float = Field(default=20.0, ge=0)
    """On SIGTERM: how long in-flight work may run before its leases are released."""


class DatabaseSettings(Section):
    url: str = "sqlite+aiosqlite:///./data/agent-runtime.db"
    auto_migrate: bool | None = None
    """Apply migrations at start. ``None`` means: yes for SQLite, no for PostgreSQL (run ``migrate``)."""
    pool_size: int = Field(default=10, ge=1)
    echo: bool = False

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    @property
    def should_auto_migrate(self) -> bool:
        return self.is_sqlite if self.auto_migrate is None else self.auto_migrate


class LimitSettings(Section):
    max_prompt_chars: int = Field(default=20_000, ge=1)
    max_steps_per_plan: int = Field(default=12, ge=1)
    max_tool_calls_per_step: int = Field(default=8, ge=1)
    max_turns_per_step: int = Field(default=10, ge=1)
    max_parallel_steps: int = Field(default=4, ge=1)
    """Steps of one task run at once (those whose dependencies are complete); 1: one after another."""
    max_replans: int = Field(default=2, ge=0, le=20)
    """Times a task may go back to the planner after a step with ``on_failure: replan`` failed."""
    verify: bool = False
    """Verify every plan that does not say (its ``verify``): ask the model whether the request was met."""
    max_metadata_bytes: int = Field(default=16_384, ge=0)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    """Request bodies larger than this are refused with 413 before they are read (api/body_limit.py)."""


class RunnerSettings(Section):
    worker_id: str | None = None
    """Defaults to ``hostname:pid``."""
    lease_seconds: float = Field(default=10.0, gt=0)
    heartbeat_seconds: float = Field(default=3.0, gt=0)
    safety_poll_seconds: float = Field(default=2.0, gt=0)
    """Work is picked up on notification; this slow poll only catches expired leases and lost wake-ups."""
    max_concurrent_planning: int = Field(default=256, ge=1)
    max_concurrent_execution: int = Field(default=256, ge=1)
    """Tasks a replica runs at once. Slots are cheap: a running task spends its time waiting on LLM
    and tool I/O and holds no database connection while it waits; each costs one lease renewal per
    ``heartbeat_seconds`` (256 tasks: ~85 one-row writes/s, well inside SQLite's single writer).
    Real limits are elsewhere: ``tools.max_server_processes`` (tasks wait for a process slot there)
    and the LLM provider's rate limits."""
    global_max_planning: int | None = Field(default=None, ge=1)
    global_max_execution: int | None = Field(default=None, ge=1)
    hand_off: bool = True
    """A command that makes a task claimable (submit, approve, revise, retry) leases it, in its own
    transaction, to this process's runner when that has a free slot (no claim transaction, no trip
    through the claim loop). Off: every task waits for a claim, whichever replica took the request."""
    journal_linger_ms: float = Field(default=2.0, ge=0, le=1000)
    """Group commit: an execution record that need not be durable before the worker goes on (step
    started, call result, text) waits at most this long to share a transaction with later ones."""

    @model_validator(mode="after")
    def _heartbeat_below_lease(self) -> RunnerSettings:
        if self.heartbeat_seconds >= self.lease_seconds:
            raise ValueError(
                f"heartbeat_seconds ({self.heartbeat_seconds}) must be below lease_seconds "
                f"({self.lease_seconds}), or leases expire between heartbeats"
            )
        return self


class ToolSettings(Section):
    registry_path: Path = Path("tool_registry.yaml")
    workspace_root: Path = Path("data/workspaces")
    keep_workspaces: bool = False
    connect_timeout_seconds: float = Field(default=15.0, gt=0)
    call_timeout_seconds: float = Field(default=60.0, gt=0)
    catalog_refresh_seconds: float = Field(default=300.0, gt=0)
    max_restarts_per_step: int = Field(default=1, ge=0)
    max_server_processes: int = Field(default=64, ge=1)
    warm_max_idle_seconds: float | None = Field(default=None, gt=0)
    """Replace a warm (pre-started, unused) instance after this long idle; ``None`` keeps it."""


class ArtifactSettings(Section):
    """Files a task writes under ``${WORKSPACE}/out/``, kept when it completes (``services/artifacts.py``)."""

    root: Path = Path("data/artifacts")
    """Where kept files live: ``<root>/<task_id>/<name>``."""
    max_file_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    """A larger file is skipped; the task's result says so (``artifacts_skipped``)."""
    max_task_bytes: int = Field(default=100 * 1024 * 1024, ge=1)
    """Files are kept in name order until the next would take the task's total past this; the rest are skipped."""
    max_files: int = Field(default=100, ge=1)
    """At most this many files per task; the rest are skipped."""


class RetentionSettings(Section):
    finished_task_max_age_days: float | None = Field(default=None, gt=0)
    """Prune finished tasks (and their events) older than this; ``None`` keeps them forever."""
    sweep_interval_seconds: float = Field(default=3600.0, gt=0)


class ObservabilitySettings(Section):
    metrics_enabled: bool = True
    otel_enabled: bool = False
    otel_endpoint: str | None = None
    otel_service_name: str = "agent-runtime"


class CorsSettings(Section):
    allow_origins: list[str] = Field(default_factory=list)
    """Browser origins allowed to call the API (e.g. ``https://console.example.com``); empty: CORS off."""
    max_age_seconds: int = Field(default=600, ge=0)
