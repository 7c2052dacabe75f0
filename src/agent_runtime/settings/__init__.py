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

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Optional

import yaml
from pydantic import ConfigDict, Field, SecretStr, ValidationError, create_model, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from agent_runtime.errors import ConfigError
from agent_runtime.settings.access import ApprovalSettings, AuthMode, AuthSettings, OidcSettings
from agent_runtime.settings.governance import (
    Budget,
    ModelPrice,
    PolicySettings,
    PricingSettings,
    ProfileSettings,
    SessionSettings,
    WebhookEndpoint,
    WebhookSettings,
)
from agent_runtime.settings.llm import (
    DEFAULT_MODELS,
    FallbackLLMSettings,
    LLMRoles,
    LLMSettings,
    Provider,
    ResolvedLLM,
)
from agent_runtime.settings.service import (
    ArtifactSettings,
    CorsSettings,
    DatabaseSettings,
    LimitSettings,
    ObservabilitySettings,
    RetentionSettings,
    RunnerSettings,
    ServerSettings,
    ToolSettings,
)

__all__ = [
    "DEFAULT_MODELS",
    "ApprovalSettings",
    "ArtifactSettings",
    "AuthMode",
    "AuthSettings",
    "Budget",
    "CorsSettings",
    "DatabaseSettings",
    "FallbackLLMSettings",
    "LLMRoles",
    "LLMSettings",
    "LimitSettings",
    "ModelPrice",
    "ObservabilitySettings",
    "OidcSettings",
    "PolicySettings",
    "PricingSettings",
    "ProfileSettings",
    "Provider",
    "ResolvedLLM",
    "RetentionSettings",
    "RunnerSettings",
    "ServerSettings",
    "SessionSettings",
    "Settings",
    "ToolSettings",
    "WebhookEndpoint",
    "WebhookSettings",
    "load_settings",
]


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


_FILE_SECTIONS: dict[str, Any] = {
    name: (Optional[field.annotation], None)  # noqa: UP045  # a runtime type expression: X | None needs a type
    for name, field in Settings.model_fields.items()
    if not field.exclude
}
_FileOnly = create_model("_FileOnly", __config__=ConfigDict(extra="forbid"), **_FILE_SECTIONS)
"""The shape of the YAML file (every section of :class:`Settings`, each optional), validated without
the environment."""


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
    update = {
        "tools": tools.model_copy(update=updates),
        "policy": policy,
        "artifacts": artifacts,
        "profiles": profiles,
    }
    return settings.model_copy(update=update)
