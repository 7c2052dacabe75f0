from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agent_runtime.domain.events import Event
from agent_runtime.store.store import TaskStore
from tests.support.databases import migrated_store


@dataclass
class RecordingListener:
    """A store listener that remembers what it was told (the real bus is tested on its own)."""

    events: list[Event] = field(default_factory=list)
    wakeups: int = 0

    def events_committed(self, events: Sequence[Event]) -> None:
        self.events.extend(events)

    def work_available(self) -> None:
        self.wakeups += 1


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TaskStore]:
    async with migrated_store(request.param, tmp_path, RecordingListener()) as store:
        yield store
