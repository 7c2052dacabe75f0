"""The policy layer is pure: importing it loads no web framework, database, provider SDK or MCP."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("fastapi", "starlette", "sqlalchemy", "openai", "anthropic", "mcp", "mcp_types", "httpx", "httpx2")


def test_importing_the_policy_package_loads_no_io_library() -> None:
    code = (
        "import sys, agent_runtime.policy\n"
        f"heavy = {HEAVY!r}\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
