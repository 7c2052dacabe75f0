"""What every event record shares: its base class and the error body tasks and steps record.

One record per event type: a ``type`` literal and the payload fields, in the order they are stored.
``TaskTx.emit`` takes a record and stores ``record.type`` and ``record.payload()`` as the event's
``type`` and ``data``. The README's event catalogue is tested against the records
(tests/domain/test_events.py), and ``TaskEvent`` is the schema of an event's ``type`` + ``data``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class EventRecord(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", use_enum_values=True, json_schema_serialization_defaults_required=True
    )

    def payload(self) -> dict[str, Any]:
        """The stored ``data``: every field but ``type``, in declaration order."""
        return self.model_dump(mode="json", exclude=_TYPE_ONLY)


_TYPE_ONLY = {"type"}


class ErrorBody(BaseModel):
    """An error as tasks and steps record it: a stable code, a message and, sometimes, details."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str
    message: str
    details: dict[str, Any] | None = Field(default=None, exclude_if=lambda v: v is None)
