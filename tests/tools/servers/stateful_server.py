"""An MCP server (the SDK's ``MCPServer``) with in-memory state, for fork-server isolation tests.

``remember{text}`` keeps ``text`` in a module-level list, sets ``$REMEMBERED`` in its environment and
writes ``remembered.txt`` in its working directory; ``inspect`` reports what this instance can see:
the list, ``$REMEMBERED``, the files of its working directory, its pid, process group, session, and
the names of its environment variables.
"""

import os

from mcp.server.mcpserver import MCPServer

MEMORY: list[str] = []
server = MCPServer("stateful")


@server.tool()
def remember(text: str) -> str:
    """Remember ``text`` in memory, in the environment and in a file."""
    MEMORY.append(text)
    os.environ["REMEMBERED"] = text
    with open("remembered.txt", "w", encoding="utf-8") as note:
        note.write(text)
    return "ok"


@server.tool()
def inspect() -> dict[str, object]:
    """What this instance can see."""
    return {
        "memory": list(MEMORY),
        "remembered_env": os.environ.get("REMEMBERED"),
        "files": sorted(os.listdir(".")),
        "cwd": os.getcwd(),
        "pid": os.getpid(),
        "pgid": os.getpgid(0),
        "sid": os.getsid(0),
        "env_names": sorted(os.environ),
    }


if __name__ == "__main__":
    server.run()
