"""One logging style: structlog event names (snake_case) with bound fields, never sentences or %-format."""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "agent_runtime"
LEVELS = {"debug", "info", "warning", "error", "exception", "critical"}
EVENT_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
PENDING: set[str] = set()
"""Packages still being moved to this style on another branch; drop an entry once it has landed."""
TABLE_DRIVEN = {"services/lifecycle_log.py": "name"}
"""Modules whose one log call takes its event name from a table (checked below), and that argument."""


def _log_calls(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args):
            continue
        receiver = node.func.value
        if node.func.attr in LEVELS and isinstance(receiver, ast.Name) and receiver.id in {"log", "logger"}:
            found.append((node.lineno, ast.unparse(node.args[0])))
    return found


def test_every_log_call_outside_pending_packages_names_an_event_and_binds_fields() -> None:
    bad = []
    checked = 0
    for path in sorted(SRC.rglob("*.py")):
        if path.relative_to(SRC).parts[0] in PENDING:
            continue
        for line, first in _log_calls(path):
            checked += 1
            name = first.strip("'\"")
            if TABLE_DRIVEN.get(str(path.relative_to(SRC))) == first:
                continue
            if first[0] not in "'\"" or not EVENT_NAME.match(name):
                bad.append(f"{path.relative_to(SRC)}:{line}: {first}")
    assert checked > 20  # the scan sees the service's log calls
    assert bad == []


def test_the_lifecycle_log_table_names_events_in_the_same_style() -> None:
    from agent_runtime.services.lifecycle_log import LIFECYCLE

    assert [name for name, _ in LIFECYCLE.values() if not EVENT_NAME.match(name)] == []
