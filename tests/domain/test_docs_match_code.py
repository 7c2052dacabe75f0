"""The docs describe the code that exists: the state diagram matches the transition table, and the
names README.md and docs/*.md mention in backticks (files, ``Class.member``, ``module.name``,
settings keys, ``AGENT_RUNTIME_*`` variables) exist.

Pragmatic, not exhaustive: a backticked name is checked only when it is recognisably ours (a path
under one of our folders, a class defined in src/, tests/ or bench/, a module of the package, a
settings section); anything else (third-party names, event fields, shell snippets) is left alone.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from agent_runtime.domain.states import TRANSITIONS
from agent_runtime.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "agent_runtime"
DOC = ROOT / "docs" / "architecture.md"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EDGE = re.compile(r"^\s+([a-z_]+) --> ([a-z_]+)", re.MULTILINE)
CODE = re.compile(r"`([^`\n]+)`")
PATH = re.compile(r"[\w./-]+\.(?:py|sh|md|yaml|yml|toml)")
DOTTED = re.compile(r"([A-Za-z_]\w*(?:\.(?:\w+|\*))+)(?:\(\))?")
OURS = {"src", "tests", "bench", "docs", "scripts", "k8s", "examples", ".ci"} | {
    p.name for p in SRC.iterdir() if p.is_dir() and not p.name.startswith("_")
}
HISTORY = {"benchmarks.md"}
"""Measurement notes name private code as it was when measured: their ``_private`` names are not checked."""
PATTERNS = {"server.tool"}
"""Backticked names that are patterns, not names: a namespaced tool is ``server.tool``."""


def test_the_architecture_state_diagram_matches_the_transition_table() -> None:
    diagram = DOC.read_text().split("stateDiagram-v2", 1)[1].split("```", 1)[0]
    drawn = {(a, b) for a, b in EDGE.findall(diagram)}
    allowed = {(str(a), str(b)) for a, targets in TRANSITIONS.items() for b in targets}
    assert drawn == allowed


def _mentions() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for doc in DOCS:
        for match in CODE.finditer(doc.read_text(encoding="utf-8")):
            found.setdefault(match.group(1).strip(), set()).add(doc.name)
    return found


@cache
def _repo_files() -> frozenset[str]:
    files = {p.name for p in ROOT.iterdir() if p.is_file()}
    for folder in OURS & {p.name for p in ROOT.iterdir() if p.is_dir()}:
        files |= {str(p.relative_to(ROOT)) for p in (ROOT / folder).rglob("*") if p.is_file()}
    return frozenset(f for f in files if "__pycache__" not in f)


def _path_exists(token: str) -> bool | None:
    """True/False for a path of ours; None for one that is not (container or third-party paths)."""
    files = _repo_files()
    if "/" not in token:
        return any(f == token or f.endswith("/" + token) for f in files)
    first = token.lstrip("./").split("/", 1)[0]
    if token.startswith("/") or first not in OURS:
        return None
    token = token.removeprefix("./")
    return token in files or f"src/agent_runtime/{token}" in files


@cache
def _classes() -> dict[str, set[str]]:
    """Every class defined in src/, tests/ and bench/, with the names it defines or assigns on self."""
    members: dict[str, set[str]] = {}
    for folder in (SRC, ROOT / "tests", ROOT / "bench"):
        for path in folder.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ClassDef):
                    names = members.setdefault(node.name, set())
                    for inner in ast.walk(node):
                        if isinstance(inner, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                            names.add(inner.name)
                        elif isinstance(inner, ast.AnnAssign | ast.Assign):
                            targets = inner.targets if isinstance(inner, ast.Assign) else [inner.target]
                            for target in targets:
                                if isinstance(target, ast.Name):
                                    names.add(target.id)
                                elif isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
                                    names.add(target.attr)  # self.x = ...
    return members


def _setting_exists(parts: list[str]) -> bool:
    model: Any = Settings
    for part in parts:
        if part == "*":
            return True
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or part not in model.model_fields:
            return False
        model = model.model_fields[part].annotation
    return True


@cache
def _top_level_names(path: Path) -> frozenset[str]:
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.ImportFrom | ast.Import):
            names |= {alias.asname or alias.name for alias in node.names}
    return frozenset(names)


def _module_attr_exists(parts: list[str]) -> bool | None:
    """``module.name[.member]`` of ours (read, not imported); None when the first part is no module of ours."""
    base = ROOT if parts[0] in {"tests", "bench"} else SRC
    for cut in range(len(parts), 0, -1):
        stem = base.joinpath(*parts[:cut])
        module = stem.with_suffix(".py") if stem.with_suffix(".py").is_file() else stem / "__init__.py"
        if not module.is_file():
            continue
        rest = parts[cut:]
        if not rest:
            return True
        if rest[0] not in _top_level_names(module):
            return (stem / rest[0]).with_suffix(".py").is_file()  # a submodule named from its package
        return len(rest) == 1 or rest[1] in _classes().get(rest[0], set())
    return None


def _dotted_exists(token: str) -> bool | None:
    parts = token.split(".")
    if parts[0] in _classes():
        return parts[1] in _classes()[parts[0]]
    if parts[0] in Settings.model_fields and _setting_exists(parts):
        return True
    as_module = _module_attr_exists(parts)
    if as_module is not None:
        return as_module
    return False if parts[0] in Settings.model_fields else None


def _variable_exists(token: str) -> bool:
    name = token.removeprefix("AGENT_RUNTIME_")
    if "__" in name:
        return _setting_exists(name.lower().split("__"))
    code = (p for folder in ("src", "tests", "scripts", ".ci") for p in (ROOT / folder).rglob("*") if p.is_file())
    return any(token in p.read_text(encoding="utf-8", errors="replace") for p in code)


def test_names_the_docs_mention_in_backticks_exist() -> None:
    missing: list[str] = []
    checked = 0
    for token, where in sorted(_mentions().items()):
        if token in PATTERNS or (where <= HISTORY and re.search(r"(^|\.)_", token)):
            continue
        exists: bool | None = None
        if PATH.fullmatch(token):
            exists = _path_exists(token)
        elif token.startswith("AGENT_RUNTIME_") and re.fullmatch(r"[A-Z0-9_]+", token):
            exists = _variable_exists(token)
        elif match := DOTTED.fullmatch(token):
            exists = _dotted_exists(match.group(1))
        if exists is None:
            continue
        checked += 1
        if not exists:
            missing.append(f"`{token}` ({', '.join(sorted(where))})")
    assert checked > 100  # the check sees the docs' names, not nothing
    assert missing == [], "\n".join(missing)
