"""Provider SDKs are imported on first use, not when the service builds its clients at start-up."""

from __future__ import annotations

import subprocess
import sys

import pytest

CHECK = """
import asyncio, sys
from tests.support.fake_llm import resolved_for
from agent_runtime.llm.factory import build_llm_client

async def main() -> None:
    client = build_llm_client(resolved_for({provider!r}))
    print({sdk!r} in sys.modules)
    await client.prepare()
    print({sdk!r} in sys.modules)
    await client.aclose()

asyncio.run(main())
"""


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_building_a_provider_client_imports_its_sdk_only_when_it_is_first_needed(provider: str) -> None:
    # A fresh interpreter: this test process may have imported the SDKs already.
    done = subprocess.run(
        [sys.executable, "-c", CHECK.format(provider=provider, sdk=provider)],
        check=True,
        timeout=120,
        capture_output=True,
        text=True,
    )
    assert done.stdout.split() == ["False", "True"]
