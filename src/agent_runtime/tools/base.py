"""Provider-neutral records for tools, shared by the catalogue, the pool and the executor."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SEPARATOR = "."


def qualified_name(server_id: str, tool: str) -> str:
    """``server.tool``: server ids may not contain dots, so the split is unambiguous."""
    return f"{server_id}{SEPARATOR}{tool}"


def split_name(name: str) -> tuple[str, str]:
    server, sep, tool = name.partition(SEPARATOR)
    if not sep or not server or not tool:
        raise ValueError(f"tool name {name!r} is not of the form server.tool")
    return server, tool


@dataclass(frozen=True, slots=True)
class ToolInfo:
    """One tool of one registered server, as listed by ``list_tools``.

    The four annotations are the *effective* ones: the server's MCP hints with the MCP defaults for
    a missing hint (not read-only, destructive, not idempotent, open world) and the registry's
    per-tool override applied on top (``tools/convert.py``). MCP calls the hints untrusted; an
    override is the operator's word, and ``vouched_by`` says whose.
    """

    server_id: str
    name: str
    description: str
    input_schema: dict[str, Any]
    read_only: bool = False
    idempotent: bool = False
    destructive: bool = True
    """Meaningless for a read-only tool, which is never destructive."""
    open_world: bool = True
    overridden: tuple[str, ...] = ()
    """The annotations the registry set for this tool (``read_only``, ``destructive``, ...)."""
    vouched_by: str | None = None
    """Who vouched for the registry's override (the ``vouched_by`` of its ``tools:`` entry)."""

    @property
    def qualified_name(self) -> str:
        return qualified_name(self.server_id, self.name)

    @property
    def safe_to_repeat(self) -> bool:
        return self.read_only or self.idempotent


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a tool call returned. ``is_error`` is data for the model, not an exception."""

    text: str
    is_error: bool = False
    structured: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
