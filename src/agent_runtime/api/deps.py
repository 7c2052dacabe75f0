"""How handlers reach the runtime: through the request (``runtime_of(request)``, ``tasks_of(request)``).

The runtime is built in the app's lifespan and kept on ``app.state``. Handlers take the ``Request``
and read it from there rather than through ``Depends``: FastAPI solves a sub-dependency on every
request (its own parameter pass, the per-request cache, the call), which costs more than the
request's own routing; a ``Request`` parameter is handed over as it is.
"""

from __future__ import annotations

from fastapi import Request

from agent_runtime.runtime import Runtime
from agent_runtime.services.tasks import TaskService


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def tasks_of(request: Request) -> TaskService:
    return runtime_of(request).tasks
