"""uvicorn's server with a drain phase before it stops listening.

On the first SIGTERM/SIGINT the service keeps serving while it drains: ``/readyz`` answers 503 (so
load balancers stop routing here), SSE streams end (clients reconnect elsewhere with
``Last-Event-ID``), the runner stops claiming and gives in-flight work the grace period before
handing it back. Only then does uvicorn shut down and the process exit 0. A second signal exits
at once, as plain uvicorn would.
"""

from __future__ import annotations

import asyncio
from types import FrameType

import structlog
import uvicorn

from agent_runtime.runtime import Runtime, drain_runtime

log = structlog.get_logger(__name__)


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._drain_requested = False
        self._drain_task: asyncio.Task[None] | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        runtime: Runtime | None = getattr(getattr(self.config.app, "state", None), "runtime", None)
        if self._drain_requested or runtime is None:
            super().handle_exit(sig, frame)
            return
        self._drain_requested = True
        # A signal handler may run between any two bytecodes: hand over to the loop safely.
        asyncio.get_event_loop().call_soon_threadsafe(self._start_drain, runtime, sig)

    def _start_drain(self, runtime: Runtime, sig: int) -> None:
        log.info("drain_started", signal=sig)
        self._drain_task = asyncio.get_running_loop().create_task(self._drain_then_exit(runtime))

    async def _drain_then_exit(self, runtime: Runtime) -> None:
        try:
            await drain_runtime(runtime)
        finally:
            log.info("drain_finished")
            self.should_exit = True
