"""Python client of the agent-runtime service: sync and async, typed with the service's own models.

    from agent_runtime.client import Client

    with Client("http://127.0.0.1:8080") as client:           # key: api_key=… or $AGENT_RUNTIME_API_KEY
        task = client.submit("Write a note named hello saying hi")
        task = client.wait(task.id)                              # the plan is ready (awaiting_approval)
        client.approve(task.id, task.current_plan_version)
        for event in client.events(task.id):                     # reconnects with Last-Event-ID
            print(event.seq, event.type)

It imports no part of the server (FastAPI, SQLAlchemy, provider SDKs): only httpx2, pydantic and
the API's schemas.
"""

from agent_runtime.client.aio import AsyncClient
from agent_runtime.client.base import DEFAULT_SERVER, KEY_ENV
from agent_runtime.client.errors import (
    APIError,
    ClientError,
    Conflict,
    ConnectionFailed,
    InvalidRequest,
    NotFound,
    ServerError,
    Unauthorized,
)
from agent_runtime.client.resume import FINAL, SETTLED, Backoff
from agent_runtime.client.sync import Client
from agent_runtime.domain.plan import Plan, PlanStep
from agent_runtime.schemas import (
    ArtifactList,
    ArtifactOut,
    EventOut,
    InboxItemOut,
    InboxPage,
    PlanOut,
    PlanVersionOut,
    SessionPage,
    SessionTaskOut,
    StepOut,
    TaskOut,
    TaskPage,
    TaskSummary,
)

__all__ = [
    "DEFAULT_SERVER",
    "FINAL",
    "KEY_ENV",
    "SETTLED",
    "APIError",
    "ArtifactList",
    "ArtifactOut",
    "AsyncClient",
    "Backoff",
    "Client",
    "ClientError",
    "Conflict",
    "ConnectionFailed",
    "EventOut",
    "InboxItemOut",
    "InboxPage",
    "InvalidRequest",
    "NotFound",
    "Plan",
    "PlanOut",
    "PlanStep",
    "PlanVersionOut",
    "ServerError",
    "SessionPage",
    "SessionTaskOut",
    "StepOut",
    "TaskOut",
    "TaskPage",
    "TaskSummary",
    "Unauthorized",
]
