"""Another model of a role's provider, on request: an agent profile's ``planner.model`` or
``executor.model``.

The role's own client answers when no model (or the role's own) is asked for. Any other name
gets a client built from the role's resolved settings with only the primary's model replaced
(same provider, key, base URL, retries and fallbacks), once, and kept until the service stops.
Without a builder (a test's client passed in as an override) the role's client answers for
every model name.
"""

from __future__ import annotations

from collections.abc import Callable

from agent_runtime.llm.base import LLMClient

Builder = Callable[[str], LLMClient]


class RoleModels:
    def __init__(self, default: LLMClient, build: Builder | None = None) -> None:
        self.default = default
        self._build = build
        self._extra: dict[str, LLMClient] = {}

    def get(self, model: str | None) -> LLMClient:
        if model is None or model == self.default.model or self._build is None:
            return self.default
        client = self._extra.get(model)
        if client is None:
            client = self._extra[model] = self._build(model)
        return client

    async def aclose(self) -> None:
        """Close the clients built for other models (the role's own client is its owner's)."""
        extra, self._extra = list(self._extra.values()), {}
        for client in extra:
            await client.aclose()
