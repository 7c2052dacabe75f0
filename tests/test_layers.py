"""The layers import only downward: api → services → agents → (policy, profiles) → (llm, tools) →
store → settings → domain → errors; and only api/ imports FastAPI, only llm/ the provider SDKs, only
tools/ the MCP SDK (docs/architecture.md). Read from the source with ``ast``: every import counts,
those under ``TYPE_CHECKING`` and inside functions too."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "agent_runtime"

RANK = {
    "errors": 0,
    "domain": 1,
    "settings": 2,
    "config_files": 2,
    "observability": 3,
    "store": 3,
    "llm": 4,
    "tools": 4,
    "policy": 5,
    "profiles": 5,
    "agents": 6,
    "services": 7,
    "api": 8,
    "console": 8,
}
"""A package may import packages of its own rank or below. Entry points and wiring (``app``,
``runtime``, ``cli``, ``server``) and the client side (``client``, ``operator_cli``, ``testing``)
are outside the stack."""

ONLY = {"fastapi": {"api", "console", "app", "testing"}, "openai": {"llm"}, "anthropic": {"llm"}, "mcp": {"tools"}}
"""Third-party packages only these parts import (``testing`` serves the wire fake with FastAPI)."""


def _imports() -> list[tuple[str, str, str]]:
    """(importing package, imported top-level name, file) for every import under src/."""
    found: list[tuple[str, str, str]] = []
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC).parts
        package = parts[0] if len(parts) > 1 else parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                head, _, rest = name.partition(".")
                target = rest.split(".")[0] if head == "agent_runtime" else head
                found.append(
                    (package, target if head == "agent_runtime" else f"ext:{head}", str(path.relative_to(SRC)))
                )
    return found


def test_every_import_points_down_the_layers() -> None:
    upward = sorted(
        f"{where}: {package} imports {target}"
        for package, target, where in _imports()
        if package in RANK and target in RANK and RANK[target] > RANK[package]
    )
    assert upward == []


def test_only_their_own_layer_imports_fastapi_the_provider_sdks_and_mcp() -> None:
    stray = sorted(
        f"{where}: {package} imports {target[4:]}"
        for package, target, where in _imports()
        if target.startswith("ext:") and target[4:] in ONLY and package not in ONLY[target[4:]]
    )
    assert stray == []


def test_the_check_sees_the_imports() -> None:
    pairs = {(package, target) for package, target, _ in _imports()}
    assert {("services", "store"), ("api", "services"), ("tools", "ext:mcp"), ("llm", "ext:openai")} <= pairs
