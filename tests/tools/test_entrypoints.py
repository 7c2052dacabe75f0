"""Which commands a fork server can serve: console scripts, ``python script.py``, ``python -m``."""

from __future__ import annotations

import sys
from pathlib import Path

from agent_runtime.tools.entrypoints import find_entry_point
from tests.tools.tool_helpers import EXAMPLE_SERVER


def test_a_pip_console_script_is_its_shebang_interpreter_and_function(tmp_path: Path) -> None:
    script = tmp_path / "mcp-server-demo"
    script.write_text(
        f"#!{sys.executable}\nimport sys\nfrom demo_pkg.cli import main\nif __name__ == '__main__':\n"
        "    sys.exit(main())\n",
        encoding="utf-8",
    )
    found = find_entry_point(str(script), ("--flag",))
    assert found is not None
    entry, argv = found
    assert (entry.interpreter, entry.kind, entry.target, entry.attr) == (
        sys.executable,
        "callable",
        "demo_pkg.cli",
        "main",
    )
    assert argv == (str(script), "--flag")


def test_a_script_or_module_run_by_python_is_recognised() -> None:
    script = find_entry_point(sys.executable, (str(EXAMPLE_SERVER), "--x"))
    assert script is not None and script[0].kind == "script" and script[1] == (str(EXAMPLE_SERVER), "--x")
    module = find_entry_point(sys.executable, ("-m", "pkg.server", "--y"))
    assert module is not None and module[0].kind == "module" and module[1] == ("pkg.server", "--y")


def test_anything_else_is_spawned(tmp_path: Path) -> None:
    shell = tmp_path / "server.sh"
    shell.write_text("#!/bin/sh\nexec python3 -m x\n", encoding="utf-8")
    assert find_entry_point(str(shell), ()) is None  # not a Python shebang
    assert find_entry_point("/usr/bin/node", ("server.js",)) is None
    assert find_entry_point(sys.executable, ("-u", str(EXAMPLE_SERVER))) is None  # interpreter options
    assert find_entry_point(sys.executable, ("relative.py",)) is None
    assert find_entry_point("python3", (str(EXAMPLE_SERVER),)) is None  # not an absolute interpreter path
