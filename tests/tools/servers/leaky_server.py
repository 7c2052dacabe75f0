"""An MCP server that prints the secrets the registry gave it to stderr, then fails.

At start, with ``$LEAKY_FAIL_AT_START`` set, it prints ``$LEAKY_TOKEN`` and ``$LEAKY_FILE_TOKEN`` and exits
before the handshake. Otherwise it serves ``leak``, which prints them and kills the process mid-call.
"""

import os
import sys

from mcp.server.mcpserver import MCPServer


def _print_secrets() -> None:
    for name in ("LEAKY_TOKEN", "LEAKY_FILE_TOKEN"):
        print(f"debug: {name}={os.environ.get(name, '')}", file=sys.stderr, flush=True)


if os.environ.get("LEAKY_FAIL_AT_START"):
    _print_secrets()
    sys.exit(3)

server = MCPServer("leaky")


@server.tool()
def leak() -> str:
    """Print the secrets to stderr and die."""
    _print_secrets()
    os._exit(1)


if __name__ == "__main__":
    server.run()
