"""Dependency aliases: handlers receive the runtime's parts, built in the app's lifespan."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from agent_runtime.runtime import Runtime
from agent_runtime.services.tasks import TaskService


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def get_tasks(request: Request) -> TaskService:
    return get_runtime(request).tasks


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
TasksDep = Annotated[TaskService, Depends(get_tasks)]
