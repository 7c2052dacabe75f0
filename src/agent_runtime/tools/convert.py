"""Translation between MCP SDK types and our provider-neutral records (``ToolInfo``, ``ToolResult``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import mcp_types

from agent_runtime.tools.base import ToolInfo, ToolResult
from agent_runtime.tools.registry import ToolOverride


def tool_info(server_id: str, tool: mcp_types.Tool, overrides: Mapping[str, ToolOverride]) -> ToolInfo:
    """Build a ToolInfo from a listed tool: its MCP hints, the MCP defaults where a hint is missing,
    then the registry's per-tool override (which wins: the hints are the server's untrusted claims).

    MCP defaults: not read-only, destructive (when not read-only), not idempotent, open world. An
    override of ``idempotent: false`` or ``destructive: true`` also clears ``read_only``: the
    operator said "this changes things", which must win over the server's own hints (fail closed).
    """
    ann = tool.annotations
    read_only = bool(ann and ann.read_only_hint)
    idempotent = bool(ann and ann.idempotent_hint)
    destructive_hint = ann.destructive_hint if ann else None
    open_world = True if ann is None or ann.open_world_hint is None else ann.open_world_hint
    override = overrides.get(tool.name)
    overridden: dict[str, bool] = override.annotations() if override is not None else {}
    if "idempotent" in overridden:
        idempotent = overridden["idempotent"]
        read_only = read_only and idempotent
    if "destructive" in overridden:
        destructive_hint = overridden["destructive"]
        read_only = read_only and not destructive_hint
    if "read_only" in overridden:
        read_only = overridden["read_only"]
    if "open_world" in overridden:
        open_world = overridden["open_world"]
    destructive = False if read_only else (True if destructive_hint is None else destructive_hint)
    return ToolInfo(
        server_id=server_id,
        name=tool.name,
        description=tool.description or (ann.title if ann and ann.title else "") or "",
        input_schema=dict(tool.input_schema),
        read_only=read_only,
        idempotent=idempotent,
        destructive=destructive,
        open_world=open_world,
        overridden=tuple(overridden),
        vouched_by=override.vouched_by if override is not None and overridden else None,
    )


def _block_text(block: mcp_types.ContentBlock) -> str:
    if isinstance(block, mcp_types.TextContent):
        return block.text
    if isinstance(block, mcp_types.EmbeddedResource):
        res = block.resource
        if isinstance(res, mcp_types.TextResourceContents):
            return res.text
        return f"[binary resource {res.uri} ({res.mime_type or 'unknown type'})]"
    if isinstance(block, mcp_types.ResourceLink):
        return f"[resource link {block.uri}]"
    if isinstance(block, mcp_types.ImageContent):
        return f"[image {block.mime_type}, {len(block.data)} base64 characters]"
    if isinstance(block, mcp_types.AudioContent):
        return f"[audio {block.mime_type}, {len(block.data)} base64 characters]"
    return f"[{type(block).__name__}]"


def tool_result(server_id: str, tool: str, result: mcp_types.CallToolResult) -> ToolResult:
    """Flatten a CallToolResult: text blocks joined, other blocks summarised, ``isError`` kept as data."""
    text = "\n".join(_block_text(block) for block in result.content)
    structured: dict[str, Any] | None
    if result.structured_content is None or isinstance(result.structured_content, dict):
        structured = result.structured_content
    else:
        structured = {"result": result.structured_content}
    meta: dict[str, Any] = {
        "server_id": server_id,
        "tool": tool,
        "content_types": [block.type for block in result.content],
    }
    return ToolResult(text=text, is_error=result.is_error, structured=structured, meta=meta)


def protocol_error_result(server_id: str, tool: str, code: int, message: str) -> ToolResult:
    """A JSON-RPC error the model caused (unknown tool, invalid arguments), returned as data."""
    return ToolResult(
        text=f"tool call rejected by server {server_id!r}: {message}",
        is_error=True,
        meta={"server_id": server_id, "tool": tool, "protocol_error": code},
    )
