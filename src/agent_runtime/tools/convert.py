"""Translation between MCP SDK types and our provider-neutral records (``ToolInfo``, ``ToolResult``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import mcp_types

from agent_runtime.tools.base import ToolInfo, ToolResult


def tool_info(server_id: str, tool: mcp_types.Tool, idempotent_overrides: Mapping[str, bool]) -> ToolInfo:
    """Build a ToolInfo from a listed tool, applying the registry's per-tool idempotent override.

    An override of ``false`` also clears ``read_only``: the operator said "do not repeat this",
    which must win over the server's own hints (fail closed).
    """
    ann = tool.annotations
    read_only = bool(ann and ann.read_only_hint)
    idempotent = bool(ann and ann.idempotent_hint)
    override = idempotent_overrides.get(tool.name)
    if override is not None:
        idempotent = override
        read_only = read_only and override
    return ToolInfo(
        server_id=server_id,
        name=tool.name,
        description=tool.description or (ann.title if ann and ann.title else "") or "",
        input_schema=dict(tool.input_schema),
        read_only=read_only,
        idempotent=idempotent,
        destructive=ann.destructive_hint if ann else None,
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
