"""The model sections: a provider and model per role (planner, executor), with fallbacks."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
)

from agent_runtime.settings.base import Section

Provider = Literal["openai", "anthropic", "offline"]

DEFAULT_MODELS: dict[str, str] = {
    "openai": "gpt-4.1-mini",
    "anthropic": "claude-sonnet-4-6",
    "offline": "offline-test",
}


class FallbackLLMSettings(Section):
    """One entry of ``llm.<role>.fallback``: a model tried when the ones before it are out.

    Unset fields come from the role: the key and base URL from the provider's own variables
    (``OPENAI_API_KEY`` …) as for the primary, the timeout and retries from the role's settings."""

    provider: Literal["openai", "anthropic"]
    model: str | None = None
    base_url: str | None = None
    api_key: SecretStr | None = None
    timeout_seconds: float | None = Field(default=None, gt=0)
    max_retries: int | None = Field(default=None, ge=0, le=10)


class LLMSettings(Section):
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


class LLMRoles(Section):
    planner: LLMSettings = Field(default_factory=LLMSettings)
    executor: LLMSettings = Field(default_factory=LLMSettings)
