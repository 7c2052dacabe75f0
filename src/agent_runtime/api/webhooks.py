"""Webhook routes: the delivery record of every notification, and sending one again (admins only).

Endpoints are configured in ``config.yaml`` (``webhooks``), not through the API; a delivery names its
endpoint by id, never by URL or secret. An admin sees the deliveries of its own tenant's tasks.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field

from agent_runtime.api.auth import GuardedRoute, access, principal_of
from agent_runtime.api.deps import runtime_of
from agent_runtime.api.tasks import TASK_ID
from agent_runtime.domain.identity import Permission
from agent_runtime.domain.notifications import Delivery, DeliveryStatus

router = APIRouter(tags=["webhooks"], route_class=GuardedRoute)
ENDPOINT_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
CURSOR = r"^[0-9]{1,18}$"


class DeliveryOut(BaseModel):
    id: int
    webhook_id: str = Field(description="The webhook-id header sent: evt_<task_id>_<seq>, the same on every attempt")
    task_id: str
    seq: int
    type: str = Field(description="The event type")
    endpoint_id: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime = Field(description="When a pending delivery is (or was) due")
    last_attempt_at: datetime | None
    last_status_code: int | None = Field(description="The receiver's HTTP status on the last attempt")
    last_error: str | None = Field(description="Why the last attempt failed: a status or a connection error")
    delivered_at: datetime | None
    created_at: datetime


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    next_cursor: str | None = Field(description="Pass as cursor for the next (older) page; null on the last page")


def _out(d: Delivery) -> DeliveryOut:
    return DeliveryOut(
        id=d.id,
        webhook_id=d.message_id,
        task_id=d.task_id,
        seq=d.seq,
        type=d.type,
        endpoint_id=d.endpoint_id,
        status=d.status,
        attempts=d.attempts,
        next_attempt_at=d.next_attempt_at,
        last_attempt_at=d.last_attempt_at,
        last_status_code=d.last_status_code,
        last_error=d.last_error,
        delivered_at=d.delivered_at,
        created_at=d.created_at,
    )


@router.get(
    "/v1/webhooks/deliveries",
    response_model=DeliveryPage,
    summary="Webhook deliveries of the caller's tenant, newest first: status, attempts, last error",
    openapi_extra=access(Permission.ADMIN),
)
async def deliveries(
    request: Request,
    task_id: Annotated[str | None, Query(pattern=TASK_ID)] = None,
    status: DeliveryStatus | None = None,
    endpoint: Annotated[str | None, Query(pattern=ENDPOINT_ID, description="an endpoint id from config")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(pattern=CURSOR, description="next_cursor of the previous page")] = None,
) -> DeliveryPage:
    found = await runtime_of(request).webhooks.deliveries(
        tenant=principal_of(request).tenant,
        task_id=task_id,
        status=status,
        endpoint_id=endpoint,
        limit=limit + 1,
        before=int(cursor) if cursor is not None else None,
    )
    next_cursor = str(found[limit - 1].id) if len(found) > limit else None
    return DeliveryPage(items=[_out(d) for d in found[:limit]], next_cursor=next_cursor)


@router.post(
    "/v1/webhooks/deliveries/{delivery_id}/retry",
    response_model=DeliveryOut,
    summary="Send a failed (or delivered) webhook again, from its first attempt; 409 while it is pending",
    openapi_extra=access(Permission.ADMIN),
)
async def retry(
    delivery_id: Annotated[int, Path(ge=1, le=2**62, description="The delivery's id")], request: Request
) -> DeliveryOut:
    return _out(await runtime_of(request).webhooks.resend(delivery_id, principal_of(request).tenant))
