"""Hand-off: a command that makes a task claimable offers it to this process's runner first.

If the runner has a free slot, the service reserves it, leases the task to the runner *in the
command's own transaction* (a new epoch), and after the commit hands the lease to the runner,
which starts the job at once (no claim transaction, no trip through the claim loop). If the write
fails the slot is freed; with no free slot the task waits for a claim by any replica. The store
only writes; this is the one place that decides.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Protocol

from agent_runtime.domain.records import Lease, TaskRecord
from agent_runtime.domain.states import CLAIMABLE, TaskStatus
from agent_runtime.store.store import TaskStore
from agent_runtime.store.tx import TaskTx


class HandOff(Protocol):
    """This process's runner, as the commands see it (``services.runner.Runner`` implements it)."""

    def reserve(self, status: TaskStatus) -> tuple[str, float] | None:
        """Hold a free slot for a task about to become claimable in ``status``: (owner, lease
        seconds), or None to leave the task to the claims (no room, draining, global limits)."""
        ...

    def adopt(self, lease: Lease) -> None:
        """The lease was committed: run the task in the reserved slot."""
        ...

    def unreserve(self, status: TaskStatus) -> None:
        """The write failed: free the reserved slot."""
        ...


class Commands:
    """Command transactions with hand-off (``hand_off`` None: commands only wake workers, as with
    ``runner.hand_off: false`` or no local runner)."""

    def __init__(self, store: TaskStore, hand_off: HandOff | None) -> None:
        self.store = store
        self._hand_off = hand_off

    @asynccontextmanager
    async def transaction(self, task_id: str) -> AsyncIterator[TaskTx]:
        """A command's transaction; if it makes the task claimable, hand it off."""
        offered: TaskStatus | None = None
        try:
            async with self.store.transaction(task_id) as tx:
                yield tx
                offered = self._offer(tx)
        except BaseException:
            if offered is not None:
                self._give_back(offered)
            raise
        if offered is not None:
            self._adopt(tx.task, offered)

    async def create(self, write: Callable[[tuple[str, datetime] | None], Awaitable[TaskRecord]]) -> TaskRecord:
        """A new task: ``write(lease_to)`` stores it, leased to the local runner when it has room."""
        reserved = self._hand_off.reserve(TaskStatus.QUEUED) if self._hand_off is not None else None
        if reserved is None:
            return await write(None)
        owner, seconds = reserved
        try:
            task = await write((owner, datetime.now(UTC) + timedelta(seconds=seconds)))
        except BaseException:
            self._give_back(TaskStatus.QUEUED)
            raise
        self._adopt(task, TaskStatus.QUEUED)
        return task

    def _offer(self, tx: TaskTx) -> TaskStatus | None:
        """Lease the task to the local runner in ``tx`` if it has a free slot; the status offered.

        Only when the task starts from a status no claim can take (e.g. awaiting approval): then no
        other worker can have leased it since it was read, and the new epoch is the read one + 1."""
        if self._hand_off is None or not tx.wakes_workers or tx.started_from.status in CLAIMABLE:
            return None
        status = tx.task.status
        reserved = self._hand_off.reserve(status)
        if reserved is None:
            return None
        owner, seconds = reserved
        tx.lease_to(owner, tx.now + timedelta(seconds=seconds))
        return status

    def _adopt(self, task: TaskRecord, offered: TaskStatus) -> None:
        assert self._hand_off is not None and task.lease_owner is not None
        self._hand_off.adopt(Lease(task.id, task.lease_owner, task.lease_epoch, offered, task.last_seq))

    def _give_back(self, offered: TaskStatus) -> None:
        assert self._hand_off is not None
        self._hand_off.unreserve(offered)
