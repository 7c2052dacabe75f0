"""A minimal MCP server over stdio without the SDK (newline-delimited JSON-RPC), so it starts in
tens of milliseconds: for tests that need many server lifecycles. Tools: ``echo{text}``, and
``whoami`` (this process's pid and the request's ``_meta``)."""

import json
import os
import sys

DIE_ON_CALL = "--die-on-call" in sys.argv  # crash mid-call, for restart-budget tests


def reply(msg_id: object, result: dict[str, object]) -> None:
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": msg_id, "result": result}) + "\n")
    sys.stdout.flush()


ECHO = {
    "name": "echo",
    "description": "Echo the text back",
    "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
    "annotations": {"readOnlyHint": True},
}
WHOAMI = {
    "name": "whoami",
    "description": "This server's pid and the call's _meta",
    "inputSchema": {"type": "object", "properties": {}},
    "annotations": {"readOnlyHint": True},
}

for line in sys.stdin:
    message = json.loads(line)
    method, msg_id = message.get("method"), message.get("id")
    if msg_id is None:
        continue  # notifications
    if method == "initialize":
        version = message["params"]["protocolVersion"]
        reply(
            msg_id,
            {"protocolVersion": version, "capabilities": {"tools": {}}, "serverInfo": {"name": "tiny", "version": "1"}},
        )
    elif method == "tools/list":
        reply(msg_id, {"tools": [ECHO, WHOAMI]})
    elif method == "tools/call":
        if DIE_ON_CALL:
            os._exit(3)
        params = message["params"]
        if params["name"] == "whoami":
            text = json.dumps({"pid": os.getpid(), "meta": params.get("_meta")})
        else:
            text = params["arguments"]["text"]
        reply(msg_id, {"content": [{"type": "text", "text": text}], "isError": False})
    elif method == "ping":
        reply(msg_id, {})
    else:
        sys.stdout.write(
            json.dumps({"jsonrpc": "2.0", "id": msg_id, "error": {"code": -32601, "message": method}}) + "\n"
        )
        sys.stdout.flush()
