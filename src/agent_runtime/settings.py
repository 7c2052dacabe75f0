"""Settings: one class, loaded from ``config.yaml``, ``.env`` and the environment.

Precedence (highest first): constructor arguments (``load_settings``'s overrides), environment
variables, a ``.env`` file in the working directory, the YAML file named by ``AGENT_RUNTIME_CONFIG``
(default ``./config.yaml``), then defaults. Settings variables are ``AGENT_RUNTIME_*`` (nested with
``__``, e.g. ``AGENT_RUNTIME_DATABASE__URL``). The providers' own variables (``OPENAI_API_KEY``,
``OPENAI_BASE_URL``, ``ANTHROPIC_API_KEY``, ``ANTHROPIC_BASE_URL``), from the environment or
``.env``, fill in keys and base URLs that the file leaves unset. Other variables in ``.env`` (docker
compose's ``POSTGRES_*``) are ignored; an ``AGENT_RUNTIME_*`` one that names no setting is an error.

Every source is pydantic-settings' own (``YamlConfigSettingsSource``, ``DotEnvSettingsSource``);
this module only picks the file and words the errors. Nothing here is created at import time: call
:func:`load_settings`.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from agent_runtime.domain.notifications import NOTIFIABLE_EVENTS
from agent_runtime.errors import ConfigError

Provider = Literal["openai", "anthropic", "offline"]

DEFAULT_MODELS: dict[str, str] = {
    "openai": "gpt-4.1-mini",
    "anthropic": "claude-sonnet-4-6",
    "offline": "offline-test",
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerSettings(_Section):
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


class DatabaseSettings(_Section):
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


class FallbackLLMSettings(_Section):
    """One entry of ``llm.<role>.fallback``: a model tried when the ones before it are out.

    Unset fields come from the role: the key and base URL from the provider's own variables
    (``OPENAI_API_KEY`` …) as for the primary, the timeout and retries from the role's settings."""

    provider: Literal["openai", "anthropic"]
    model: str | None = None
    base_url: str | None = None
    api_key: SecretStr | None = None
    timeout_seconds: float | None = Field(default=None, gt=0)
    max_retries: int | None = Field(default=None, ge=0, le=10)


class LLMSettings(_Section):
    provider: Provider | None = None
    """``None``: OpenAI if ``OPENAI_API_KEY`` is set, else Anthropic if ``ANTHROPIC_API_KEY`` is set,
    else the offline test model."""
    model: str | None = None
    base_url: str | None = None
    api_key: SecretStr | None = None
    timeout_seconds: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=3, ge=0, le=10)
    retry_base_delay_seconds: float = Field(default=0.5, ge=0)
    max_output_tokens: int = Field(default=4096, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    fallback: list[FallbackLLMSettings] = Field(default_factory=list)
    """Models tried in order when this one is out: a 429, 5xx, timeout or connection failure that
    outlasted its retries, or a refused key (``llm.fallback``). Never on an error the request caused."""
    _provider_env: dict[str, str] | None = PrivateAttr(default=None)
    """The providers' variables as :class:`Settings` read them (environment, then ``.env``)."""

    def resolved(self, env: Mapping[str, str] | None = None) -> ResolvedLLM:
        """Fill provider, model, key and base URL from the providers' own variables: ``env`` if given,
        else those the settings were loaded with, else the process environment."""
        if env is None:
            env = self._provider_env if self._provider_env is not None else os.environ
        provider: Provider
        if self.provider is not None:
            provider = self.provider
        elif env.get("OPENAI_API_KEY") or (self.api_key and not env.get("ANTHROPIC_API_KEY")):
            provider = "openai"
        elif env.get("ANTHROPIC_API_KEY"):
            provider = "anthropic"
        else:
            provider = "offline"
        key = self.api_key.get_secret_value() if self.api_key else None
        base_url = self.base_url
        if provider == "openai":
            key = key or env.get("OPENAI_API_KEY")
            base_url = base_url or env.get("OPENAI_BASE_URL")
        elif provider == "anthropic":
            key = key or env.get("ANTHROPIC_API_KEY")
            base_url = base_url or env.get("ANTHROPIC_BASE_URL")
        return ResolvedLLM(
            provider=provider,
            model=self.model or DEFAULT_MODELS[provider],
            base_url=base_url,
            api_key=SecretStr(key) if key else None,
            timeout_seconds=self.timeout_seconds,
            max_retries=self.max_retries,
            retry_base_delay_seconds=self.retry_base_delay_seconds,
            max_output_tokens=self.max_output_tokens,
            temperature=self.temperature,
            fallback=tuple(self._fallback_settings(f).resolved(env) for f in self.fallback),
        )

    def _fallback_settings(self, entry: FallbackLLMSettings) -> LLMSettings:
        """The role's settings with ``entry``'s provider, model, endpoint, key and limits."""
        update: dict[str, Any] = {"provider": entry.provider, "model": entry.model, "base_url": entry.base_url,
                                  "api_key": entry.api_key, "fallback": []}  # fmt: skip
        if entry.timeout_seconds is not None:
            update["timeout_seconds"] = entry.timeout_seconds
        if entry.max_retries is not None:
            update["max_retries"] = entry.max_retries
        return self.model_copy(update=update)


class ResolvedLLM(BaseModel):
    """LLM settings with the provider decided and the key looked up."""

    model_config = ConfigDict(frozen=True)

    provider: Provider
    model: str
    base_url: str | None
    api_key: SecretStr | None
    timeout_seconds: float
    max_retries: int
    retry_base_delay_seconds: float
    max_output_tokens: int
    temperature: float | None
    fallback: tuple[ResolvedLLM, ...] = ()
    """``llm.<role>.fallback``, resolved, in order."""


class LLMRoles(_Section):
    planner: LLMSettings = Field(default_factory=LLMSettings)
    executor: LLMSettings = Field(default_factory=LLMSettings)


class LimitSettings(_Section):
    max_prompt_chars: int = Field(default=20_000, ge=1)
    max_steps_per_plan: int = Field(default=12, ge=1)
    max_tool_calls_per_step: int = Field(default=8, ge=1)
    max_turns_per_step: int = Field(default=10, ge=1)
    max_parallel_steps: int = Field(default=4, ge=1)
    """Steps of one task run at once (those whose dependencies are complete); 1: one after another."""
    max_metadata_bytes: int = Field(default=16_384, ge=0)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    """Request bodies larger than this are refused with 413 before they are read (api/body_limit.py)."""


class RunnerSettings(_Section):
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


class ToolSettings(_Section):
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


class ArtifactSettings(_Section):
    """Files a task writes under ``${WORKSPACE}/out/``, kept when it completes (``services/artifacts.py``)."""

    root: Path = Path("data/artifacts")
    """Where kept files live: ``<root>/<task_id>/<name>``."""
    max_file_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    """A larger file is skipped; the task's result says so (``artifacts_skipped``)."""
    max_task_bytes: int = Field(default=100 * 1024 * 1024, ge=1)
    """Files are kept in name order until the next would take the task's total past this; the rest are skipped."""
    max_files: int = Field(default=100, ge=1)
    """At most this many files per task; the rest are skipped."""


class RetentionSettings(_Section):
    finished_task_max_age_days: float | None = Field(default=None, gt=0)
    """Prune finished tasks (and their events) older than this; ``None`` keeps them forever."""
    sweep_interval_seconds: float = Field(default=3600.0, gt=0)


class ObservabilitySettings(_Section):
    metrics_enabled: bool = True
    otel_enabled: bool = False
    otel_endpoint: str | None = None
    otel_service_name: str = "agent-runtime"


AuthMode = Literal["keys", "oidc", "keys+oidc", "disabled"]


class OidcSettings(_Section):
    """Bearer tokens (JWTs) from an OpenID Connect issuer, verified against its JWKS."""

    issuer: str | None = None
    """The ``iss`` every token must carry, e.g. ``https://login.example.com/realms/acme``."""
    audience: str | None = None
    """The ``aud`` every token must carry (the client id or API identifier the issuer puts there)."""
    jwks_url: str | None = None
    """Where the signing keys are; default: ``jwks_uri`` from ``<issuer>/.well-known/openid-configuration``."""
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"])
    subject_claim: str = "sub"
    tenant_claim: str | None = "tenant"
    """Claim holding the tenant; when the token lacks it, ``default_tenant`` (if set) applies, else it is refused."""
    default_tenant: str | None = None
    roles_claim: str = "roles"
    """Claim holding the roles: a list, or a space-separated string; dotted paths reach into objects
    (``realm_access.roles`` for Keycloak). Names other than viewer/submitter/approver/admin are ignored."""
    leeway_seconds: float = Field(default=30.0, ge=0, le=600)
    jwks_cache_seconds: float = Field(default=300.0, gt=0)
    jwks_refresh_cooldown_seconds: float = Field(default=30.0, ge=0)
    """An unknown ``kid`` refreshes the key set at most this often (key rotation without a restart)."""
    http_timeout_seconds: float = Field(default=10.0, gt=0)

    @field_validator("algorithms")
    @classmethod
    def _no_none_or_hmac(cls, value: list[str]) -> list[str]:
        bad = [a for a in value if a.lower() == "none" or a.upper().startswith("HS")]
        if bad or not value:
            raise ValueError(
                f"algorithms must be asymmetric (RS*, PS*, ES*, EdDSA); refused: {', '.join(bad) or '(empty list)'}"
            )
        return value


class AuthSettings(_Section):
    mode: AuthMode = "keys"
    """``keys`` (API keys from ``agent-runtime keys create``), ``oidc``, ``keys+oidc``, or
    ``disabled`` (every request is an unidentified admin; refused in production)."""
    oidc: OidcSettings = Field(default_factory=OidcSettings)
    bootstrap_admin_key: bool = True
    """Development only: with no API key in the database, ``serve`` creates one admin key at start
    and prints it once on stdout."""
    key_cache_seconds: float = Field(default=5.0, ge=0)
    """How long a replica trusts a verified API key before reading it again; a revoked key stops
    working on every replica within this time (at once on the replica that revoked it)."""
    metrics_token: SecretStr | None = None
    """When set, ``GET /metrics`` needs ``Authorization: Bearer <metrics_token>``; else it is open."""

    @property
    def keys_enabled(self) -> bool:
        return self.mode in ("keys", "keys+oidc")

    @property
    def oidc_enabled(self) -> bool:
        return self.mode in ("oidc", "keys+oidc")

    @model_validator(mode="after")
    def _oidc_complete(self) -> AuthSettings:
        if self.oidc_enabled and (not self.oidc.issuer or not self.oidc.audience):
            raise ValueError(f"auth.mode is {self.mode!r}: set auth.oidc.issuer and auth.oidc.audience")
        return self


class ApprovalSettings(_Section):
    allow_self_approval: bool = False
    """Whether the submitter of a task (or the operator who wrote its current plan version) may approve it."""
    required: int = Field(default=1, ge=1, le=10)
    """Distinct approvers a plan version needs (four-eyes: 2). Partial approvals do not carry over
    to a new version."""


class PolicySettings(_Section):
    path: Path | None = None
    """The policy file (YAML, ``policy/`` package); ``None``: the built-in default policy (every plan
    waits for ``approvals.required`` approvers, every call the plan allows is made)."""
    expiry_check_seconds: float = Field(default=1.0, gt=0, le=60)
    """How often each replica looks for approvals and call gates past their ``expire_after``."""
    estimate_history_tasks: int = Field(default=50, ge=0, le=10_000)
    """Plan estimates average the completed steps of this many recently completed tasks (0: the
    heuristic only)."""
    estimate_history_seconds: float = Field(default=30.0, ge=0)
    """How long that history is reused before it is read again."""


class ProfileSettings(_Section):
    path: Path | None = None
    """The agent profiles file (YAML, ``profiles/`` package); ``None``: one built-in profile,
    ``default``, with today's prompts, models, tool servers and limits."""


class SessionSettings(_Section):
    summary_max_tokens: int = Field(default=1000, ge=0, le=100_000)
    """The bound on the summary of a session's earlier tasks that the planner and executor see
    (estimated at four characters a token; 0: no summary)."""
    summary_max_tasks: int = Field(default=20, ge=0, le=200)
    """At most this many earlier tasks (the newest) are read for the summary."""


class Budget(_Section):
    """Limits on what one task may spend; ``None`` (the default for each) means no limit."""

    input_tokens: int | None = Field(default=None, ge=0)
    output_tokens: int | None = Field(default=None, ge=0)
    cost_usd: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    tool_calls: int | None = Field(default=None, ge=0)
    wall_seconds: float | None = Field(default=None, ge=0, allow_inf_nan=False)

    def merged(self, override: Budget | None) -> Budget:
        """This budget with every limit ``override`` sets replacing its own (a policy rule's budget)."""
        if override is None:
            return self
        return self.model_copy(update=override.model_dump(exclude_none=True))


class ModelPrice(_Section):
    """What a model costs, in USD per million tokens."""

    input_usd_per_mtok: float = Field(ge=0, allow_inf_nan=False)
    output_usd_per_mtok: float = Field(ge=0, allow_inf_nan=False)


class PricingSettings(_Section):
    models: dict[str, ModelPrice] = Field(default_factory=dict)
    """Added to (and replacing entries of) the shipped table ``policy.pricing.DEFAULT_PRICES``. A key
    also prices its dated names: ``gpt-4o`` covers ``gpt-4o-2024-08-06``."""


class CorsSettings(_Section):
    allow_origins: list[str] = Field(default_factory=list)
    """Browser origins allowed to call the API (e.g. ``https://console.example.com``); empty: CORS off."""
    max_age_seconds: int = Field(default=600, ge=0)


class WebhookEndpoint(_Section):
    """One receiver of signed event notifications (Standard Webhooks)."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    """Names the endpoint in delivery records and the API; keep it stable (pending deliveries follow it)."""
    url: str
    events: list[str] = Field(min_length=1)
    """Event types sent here; one or more of ``domain.notifications.NOTIFIABLE_EVENTS``."""
    secret: SecretStr
    """``whsec_`` + base64 of 24-64 random bytes (Standard Webhooks); the receiver verifies with it."""
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    max_attempts: int = Field(default=8, ge=1, le=100)
    """After this many failed attempts the delivery is ``failed`` (visible in the API; retry by hand)."""
    backoff_base_seconds: float = Field(default=5.0, ge=0)
    """Wait before attempt n+1: ``base * 2**(n-1)``, plus up to 10 % jitter, at most ``backoff_cap_seconds``."""
    backoff_cap_seconds: float = Field(default=3600.0, ge=0)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        return value

    @field_validator("events")
    @classmethod
    def _known_events(cls, value: list[str]) -> list[str]:
        unknown = [e for e in value if e not in NOTIFIABLE_EVENTS]
        if unknown:
            raise ValueError(
                f"unknown event type(s) {', '.join(map(repr, unknown))}; webhooks can send "
                f"{', '.join(NOTIFIABLE_EVENTS)}"
            )
        return list(dict.fromkeys(value))

    @field_validator("secret")
    @classmethod
    def _whsec(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        if not raw.startswith("whsec_"):
            raise ValueError("must start with 'whsec_' followed by base64 (Standard Webhooks form)")
        encoded = raw[len("whsec_") :]
        try:
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("is not valid base64 after 'whsec_'") from None
        if not 24 <= len(key) <= 64:
            raise ValueError(f"must decode to 24-64 bytes, not {len(key)}")
        return value


class WebhookSettings(_Section):
    endpoints: list[WebhookEndpoint] = Field(default_factory=list)
    poll_seconds: float = Field(default=5.0, gt=0)
    """Deliveries start as soon as this replica commits an event; this poll catches the rest (events
    committed by a replica that stopped, retries coming due)."""
    claim_seconds: float = Field(default=120.0, gt=0)
    """A replica sending a delivery holds it this long; after that another replica may send it again."""
    concurrency: int = Field(default=16, ge=1, le=1000)
    """Deliveries in flight at once per replica."""

    @model_validator(mode="after")
    def _consistent(self) -> WebhookSettings:
        problems = []
        ids = [e.id for e in self.endpoints]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            problems.append(f"endpoint ids must be unique; repeated: {', '.join(duplicates)}")
        slow = sorted({e.id for e in self.endpoints if e.timeout_seconds >= self.claim_seconds})
        if slow:
            problems.append(
                f"claim_seconds ({self.claim_seconds}) must exceed every endpoint's timeout_seconds "
                f"(not so for {', '.join(slow)}), or a slow delivery is sent twice"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self


class Settings(BaseSettings):
    """Every setting of the service. See ``config.yaml`` for a commented example."""

    model_config = SettingsConfigDict(
        env_prefix="AGENT_RUNTIME_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        dotenv_filtering="match_prefix",  # .env may hold other tools' variables; AGENT_RUNTIME_* typos fail
        extra="forbid",
    )

    server: ServerSettings = Field(default_factory=ServerSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    llm: LLMRoles = Field(default_factory=LLMRoles)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    runner: RunnerSettings = Field(default_factory=RunnerSettings)
    tools: ToolSettings = Field(default_factory=ToolSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    artifacts: ArtifactSettings = Field(default_factory=ArtifactSettings)
    observability: ObservabilitySettings = Field(default_factory=ObservabilitySettings)
    openai_api_key: SecretStr | None = Field(default=None, validation_alias="OPENAI_API_KEY", exclude=True)
    openai_base_url: str | None = Field(default=None, validation_alias="OPENAI_BASE_URL", exclude=True)
    anthropic_api_key: SecretStr | None = Field(default=None, validation_alias="ANTHROPIC_API_KEY", exclude=True)
    anthropic_base_url: str | None = Field(default=None, validation_alias="ANTHROPIC_BASE_URL", exclude=True)
    """The providers' own variables (environment or ``.env``); ``llm.*.resolved()`` reads them."""
    auth: AuthSettings = Field(default_factory=AuthSettings)
    approvals: ApprovalSettings = Field(default_factory=ApprovalSettings)
    cors: CorsSettings = Field(default_factory=CorsSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    budgets: Budget = Field(default_factory=Budget)
    pricing: PricingSettings = Field(default_factory=PricingSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    profiles: ProfileSettings = Field(default_factory=ProfileSettings)
    sessions: SessionSettings = Field(default_factory=SessionSettings)

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        provider_env = {
            name: value.get_secret_value() if isinstance(value, SecretStr) else value
            for name, value in (
                ("OPENAI_API_KEY", self.openai_api_key),
                ("OPENAI_BASE_URL", self.openai_base_url),
                ("ANTHROPIC_API_KEY", self.anthropic_api_key),
                ("ANTHROPIC_BASE_URL", self.anthropic_base_url),
            )
            if value
        }
        self.llm.planner._provider_env = provider_env
        self.llm.executor._provider_env = provider_env
        if self.server.environment == "production":
            if self.auth.mode == "disabled":
                raise ValueError(
                    "auth.mode is 'disabled' while server.environment is 'production'; use keys, oidc or "
                    "keys+oidc (docs/deploying.md, Authentication)"
                )
            for role in ("planner", "executor"):
                llm: LLMSettings = getattr(self.llm, role)
                if llm.resolved().provider == "offline":
                    how = "is 'offline'" if llm.provider == "offline" else "is unset and no API key is set"
                    raise ValueError(
                        f"llm.{role}.provider {how}, which means the offline test model, while "
                        "server.environment is 'production'; configure openai or anthropic and its key"
                    )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = _YAML_SOURCE.get()
        files = (config_file,) if config_file is not None else ()
        return (init_settings, env_settings, dotenv_settings, *files, file_secret_settings)


_YAML_SOURCE: ContextVar[YamlConfigSettingsSource | None] = ContextVar("agent_runtime_yaml", default=None)
"""The config file's source while :func:`load_settings` builds a :class:`Settings` (the file is chosen
per call, and ``settings_customise_sources`` is a class method)."""


def _read_yaml(path: Path) -> YamlConfigSettingsSource:
    try:
        return YamlConfigSettingsSource(Settings, yaml_file=path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    except (TypeError, ValueError, AttributeError) as exc:  # the library merges the top level as a dict
        raise ConfigError(f"{path}: the top level must be a mapping") from exc


def _describe(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"{source}: {key}: {err['msg']}")
    return "; ".join(lines)


def load_settings(config_path: Path | str | None = None, **overrides: Any) -> Settings:
    """Load settings from the YAML file and the environment; raise :class:`ConfigError` if unusable.

    ``config_path`` defaults to ``$AGENT_RUNTIME_CONFIG`` or ``./config.yaml``; a missing default file
    is fine (defaults apply), a missing explicitly named file is an error.
    """
    explicit = config_path is not None or "AGENT_RUNTIME_CONFIG" in os.environ
    path = Path(config_path or os.environ.get("AGENT_RUNTIME_CONFIG", "config.yaml"))
    if explicit and not path.is_file():
        raise ConfigError(f"{path}: cannot read config file: no such file")
    source = _read_yaml(path)  # a missing default file reads as empty: defaults apply
    try:
        # Validate the file alone first so an error names the file, not the environment.
        _FileOnly.model_validate(source.yaml_data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, str(path))) from exc
    token = _YAML_SOURCE.set(source)
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, f"{path} + environment + .env")) from exc
    finally:
        _YAML_SOURCE.reset(token)
    return _relative_to(settings, path.parent if explicit else Path.cwd())


class _FileOnly(BaseModel):
    """The shape of the YAML file, validated without the environment."""

    model_config = ConfigDict(extra="forbid")
    server: ServerSettings | None = None
    database: DatabaseSettings | None = None
    llm: LLMRoles | None = None
    limits: LimitSettings | None = None
    runner: RunnerSettings | None = None
    tools: ToolSettings | None = None
    retention: RetentionSettings | None = None
    artifacts: ArtifactSettings | None = None
    observability: ObservabilitySettings | None = None
    auth: AuthSettings | None = None
    approvals: ApprovalSettings | None = None
    cors: CorsSettings | None = None
    policy: PolicySettings | None = None
    budgets: Budget | None = None
    pricing: PricingSettings | None = None
    webhooks: WebhookSettings | None = None
    profiles: ProfileSettings | None = None
    sessions: SessionSettings | None = None


def _relative_to(settings: Settings, base: Path) -> Settings:
    """Resolve relative file paths in the settings against the config file's folder."""
    tools = settings.tools
    updates = {
        "registry_path": tools.registry_path if tools.registry_path.is_absolute() else base / tools.registry_path,
        "workspace_root": tools.workspace_root if tools.workspace_root.is_absolute() else base / tools.workspace_root,
    }
    policy = settings.policy
    if policy.path is not None and not policy.path.is_absolute():
        policy = policy.model_copy(update={"path": base / policy.path})
    artifacts = settings.artifacts
    if not artifacts.root.is_absolute():
        artifacts = artifacts.model_copy(update={"root": base / artifacts.root})
    profiles = settings.profiles
    if profiles.path is not None and not profiles.path.is_absolute():
        profiles = profiles.model_copy(update={"path": base / profiles.path})
    update = {"tools": tools.model_copy(update=updates), "policy": policy, "artifacts": artifacts,
              "profiles": profiles}  # fmt: skip
    return settings.model_copy(update=update)
