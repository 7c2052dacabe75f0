"""Fixtures for the LLM layer: a scripted fake server and real SDK clients pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from agent_runtime.llm.base import LLMClient
from agent_runtime.llm.factory import build_llm_client
from agent_runtime.settings import Provider
from agent_runtime.testing import FakeLLM, resolved_for

ClientFactory = Callable[..., LLMClient]  # what the make_client fixture yields


@pytest.fixture
def fake() -> FakeLLM:
    return FakeLLM()


@pytest.fixture(params=["openai", "anthropic"])
def provider(request: pytest.FixtureRequest) -> Provider:
    value: Provider = request.param
    return value


@pytest.fixture
async def make_client(fake: FakeLLM, provider: Provider) -> AsyncIterator[ClientFactory]:
    """Build a real SDK-backed client for ``provider`` that talks to ``fake`` in process."""
    made: list[LLMClient] = []

    def build(**overrides: Any) -> LLMClient:
        client = build_llm_client(resolved_for(provider, **overrides), http_client=fake.http_client())
        made.append(client)
        return client

    yield build
    for client in made:
        await client.aclose()
