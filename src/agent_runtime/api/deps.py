"""Dependency aliases: handlers receive the runtime's parts, built in the app's lifespan.

They are ``async def`` so FastAPI does not send each one through its thread pool."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from agent_runtime.runtime import Runtime
from agent_runtime.services.tasks import TaskService


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_tasks(request: Request) -> TaskService:
    runtime: Runtime = request.app.state.runtime
    return runtime.tasks


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
TasksDep = Annotated[TaskService, Depends(get_tasks)]
