"""Artifact routes: list and download the files a completed task kept (``services/artifacts.py``).

Both need READ and see only what ``GET /v1/tasks/{id}`` would show the caller: a task in another
tenant (or, for a submitter, someone else's) is a 404 naming the task, exactly as one that does
not exist. The list comes from the task's result (the durable record), and a download serves only
a name that list holds, from the task's own directory: the path never comes from the request.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import FileResponse

from agent_runtime.api.auth import GuardedRoute, access, principal_of
from agent_runtime.api.deps import runtime_of, tasks_of
from agent_runtime.api.tasks import TaskId
from agent_runtime.domain.identity import Permission
from agent_runtime.errors import NotFoundError
from agent_runtime.schemas import ArtifactList, ArtifactOut, SkippedArtifact
from agent_runtime.services.artifacts import NAME_PATTERN, ArtifactStore

router = APIRouter(prefix="/v1/tasks", tags=["artifacts"], route_class=GuardedRoute)
READ = access(Permission.READ)
ArtifactName = Annotated[str, Path(pattern=NAME_PATTERN, description="The artifact's file name, e.g. report.md")]


async def _result(request: Request, task_id: str) -> dict[str, Any]:
    task = await tasks_of(request).get(task_id, principal_of(request))
    return task.result or {}


@router.get(
    "/{task_id}/artifacts",
    response_model=ArtifactList,
    summary="The files the task kept from its workspace's out/ folder (empty until it completes)",
    openapi_extra=READ,
)
async def list_artifacts(task_id: TaskId, request: Request) -> ArtifactList:
    result = await _result(request, task_id)
    items = [ArtifactOut(**a, url=f"/v1/tasks/{task_id}/artifacts/{a['name']}") for a in result.get("artifacts") or []]
    skipped = [SkippedArtifact(**s) for s in result.get("artifacts_skipped") or []]
    return ArtifactList(items=items, skipped=skipped)


@router.get(
    "/{task_id}/artifacts/{name}",
    response_class=FileResponse,
    summary="Download an artifact",
    openapi_extra=READ,
    responses={
        200: {"description": "The file, as an attachment, with its media type", "content": {"*/*": {}}},
        404: {"description": "No such task (or not visible to the caller), or no such artifact"},
    },
)
async def download_artifact(task_id: TaskId, name: ArtifactName, request: Request) -> FileResponse:
    result = await _result(request, task_id)
    entry = next((a for a in result.get("artifacts") or [] if a.get("name") == name), None)
    path = ArtifactStore(runtime_of(request).settings.artifacts).path(task_id, name)
    if entry is None or path is None or not path.is_file():
        raise NotFoundError(f"task {task_id} has no artifact {name!r}", details={"field": "name"})
    return FileResponse(
        path,
        media_type=entry["media_type"],
        filename=name,  # Content-Disposition: attachment, so a browser never renders it on our origin
        headers={"ETag": f'"{entry["sha256"]}"', "X-Content-Type-Options": "nosniff"},
    )
