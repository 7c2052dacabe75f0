"""Build the :class:`LLMClient` that resolved settings ask for.

Provider SDKs are imported only when their provider is chosen (``import anthropic`` alone costs
more than a second), and then only on first use (:class:`LazyLLM`), so start-up does not wait on
them. A missing key is a :class:`ConfigError` that names the variable to set, raised at once,
before any SDK is touched.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import httpx2

from agent_runtime.errors import ConfigError
from agent_runtime.llm.base import LLMClient
from agent_runtime.llm.fallback import FallbackLLM
from agent_runtime.llm.lazy import LazyLLM
from agent_runtime.llm.offline import OfflineTestModel
from agent_runtime.settings import ResolvedLLM

KEY_ENV_VARS = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}


def build_llm_client(
    resolved: ResolvedLLM,
    *,
    http_client: httpx2.AsyncClient | None = None,
    wrap: Callable[[LLMClient], LLMClient] | None = None,
) -> LLMClient:
    """The client for ``resolved.provider``; with ``resolved.fallback``, a :class:`FallbackLLM`
    over it and its fallbacks, in order.

    ``http_client`` replaces the SDK's own transport: tests pass one bound to the fake LLM
    server (in process through ``httpx2.ASGITransport``, or on loopback). It is ignored by the
    offline test model, which makes no calls at all. ``wrap`` decorates each model of the chain
    (the service counts calls per model that way, fallbacks included).
    """
    if not resolved.fallback:
        client = _build_one(resolved, http_client)
        return wrap(client) if wrap is not None else client
    if resolved.provider == "offline":
        raise ConfigError(
            "llm fallback is configured but the primary model is the offline test model, which never "
            "fails over: set the role's provider and key, or remove its fallback list"
        )
    chain: list[LLMClient] = []
    for index, member in enumerate((resolved, *resolved.fallback)):
        if index > 0 and (member.api_key is None or not member.api_key.get_secret_value()):
            env = KEY_ENV_VARS[member.provider]
            raise ConfigError(
                f"llm fallback[{index - 1}] (provider {member.provider!r}) has no API key: set {env} "
                "(or api_key in that fallback entry), or remove the entry"
            )
        client = _build_one(member, http_client)
        chain.append(wrap(client) if wrap is not None else client)
    return FallbackLLM(chain)


def _build_one(resolved: ResolvedLLM, http_client: httpx2.AsyncClient | None) -> LLMClient:
    if resolved.provider == "offline":
        return OfflineTestModel(model=resolved.model)
    if resolved.api_key is None or not resolved.api_key.get_secret_value():
        env = KEY_ENV_VARS[resolved.provider]
        raise ConfigError(
            f"llm provider {resolved.provider!r} has no API key: set {env} "
            f"(or llm.<role>.api_key in the config file), or choose provider 'offline' "
            "to run with the offline test model"
        )
    if resolved.base_url is not None and "@" in urlsplit(resolved.base_url).netloc:
        # The SDKs authenticate with the key's header; user info would be a second credential
        # (aiohttp refuses the pair) and would show wherever the endpoint is named.
        raise ConfigError(
            f"llm provider {resolved.provider!r}: the base URL carries user info (user:password@): "
            "remove it and give the key as the provider's API key; a proxy goes in HTTPS_PROXY"
        )
    if resolved.provider == "openai":

        def build() -> LLMClient:
            from agent_runtime.llm.openai_client import OpenAIClient

            return OpenAIClient(resolved, http_client=http_client)

    elif resolved.provider == "anthropic":

        def build() -> LLMClient:
            from agent_runtime.llm.anthropic_client import AnthropicClient

            return AnthropicClient(resolved, http_client=http_client)

    else:
        raise ConfigError(f"unknown llm provider {resolved.provider!r}")
    return LazyLLM(resolved.provider, resolved.model, build)
