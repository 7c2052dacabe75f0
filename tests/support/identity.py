"""Authentication in tests: settings with ``auth.mode: keys`` and API keys made per subject and role."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from agent_runtime.services.keys import KeyService
from agent_runtime.settings import Settings
from agent_runtime.store.keys import KeyStore
from tests.support.harness import Live, make_settings, read_stream


def auth_settings(tmp: Path, **sections: Any) -> Settings:
    """Test settings with API keys on (no development bootstrap key: tests make their own)."""
    auth = {"mode": "keys", "bootstrap_admin_key": False, "key_cache_seconds": 0, **sections.pop("auth", {})}
    return make_settings(tmp, auth=auth, **sections)


async def make_key(live: Live, subject: str, tenant: str, *roles: str, **extra: Any) -> str:
    """A new API key of ``subject`` in ``tenant`` with ``roles`` (written to the service's database)."""
    issued = await KeyService(KeyStore(live.runtime.store.engine)).create(
        subject=subject, tenant=tenant, roles=list(roles), **extra
    )
    return issued.key


def bearer(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


async def submit_as(live: Live, key: str, prompt: str) -> str:
    """Submit as ``key`` and wait until the plan awaits approval; the task id."""
    response = await live.client.post("/v1/tasks", json={"prompt": prompt}, headers=bearer(key))
    assert response.status_code == 202, response.text
    task_id: str = response.json()["id"]
    await wait_for_as(live.client, key, task_id, "approval_required")
    return task_id


async def wait_for_as(client: httpx.AsyncClient, key: str, task_id: str, event_type: str) -> list[dict[str, Any]]:
    """The task's events as ``key`` sees them on its stream, from the start until ``event_type``."""
    auth_client = httpx.AsyncClient(base_url=str(client.base_url), timeout=30, headers=bearer(key))
    async with auth_client:
        return await read_stream(auth_client, task_id, until=event_type)
