"""Suite-wide fixtures. No test may reach a real model provider: their keys and URLs are removed, and
a developer's ``.env`` (which may hold a real key) is not read by in-process settings."""

from __future__ import annotations

import pytest

from agent_runtime.settings import Settings

PROVIDER_ENV = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "AGENT_RUNTIME_CONFIG")


@pytest.fixture(autouse=True)
def _no_real_providers(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROVIDER_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setitem(Settings.model_config, "env_file", None)
