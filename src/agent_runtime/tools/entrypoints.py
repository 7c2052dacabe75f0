"""Which Python entry point a stdio server's command runs, so a fork server can pre-import it.

Three shapes are recognised, and nothing else (anything else is spawned as usual):

* ``<python> path/to/script.py [args]``: the script runs as ``__main__``; its top-level imports are
  pre-imported;
* ``<python> -m package.module [args]``: likewise for the module;
* a console script (``.venv/bin/mcp-server-time``): a file whose shebang names a Python interpreter
  and whose body is the ``from X import Y ... sys.exit(Y())`` that pip and uv generate; ``X`` is
  pre-imported and the child calls ``Y()``.

The interpreter is always the server's own (the shebang's, or the command), never the service's
unless the registry says ``${PYTHON}``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

_PYTHON = re.compile(r"^python(\d+(\.\d+)?)?$")
_CONSOLE_IMPORT = re.compile(r"^from ([A-Za-z_][\w.]*) import ([A-Za-z_]\w*)\s*$", re.MULTILINE)
_CONSOLE_CALL = re.compile(r"sys\.exit\(\s*([A-Za-z_]\w*)\(\)\s*\)")
_HEAD_BYTES = 4096


@dataclass(frozen=True, slots=True)
class EntryPoint:
    """What a fork server for one server command pre-imports and runs."""

    interpreter: str
    kind: Literal["callable", "module", "script"]
    target: str
    """The module (``callable``, ``module``) or the script path (``script``)."""
    attr: str = ""
    """The function a ``callable`` entry point calls."""
    argv0: str = ""
    """``sys.argv[0]`` of an instance (the console script or the script path)."""
    path0: str = ""
    """``sys.path[0]`` as the interpreter would set it (the script's folder)."""

    def spec(self) -> dict[str, str]:
        """The part of the fork server's start-up spec that names what to import."""
        if self.kind == "callable":
            return {"kind": "callable", "module": self.target, "attr": self.attr, "path0": self.path0}
        if self.kind == "module":
            return {"kind": "module", "module": self.target, "path0": self.path0}
        return {"kind": "script", "script": self.target, "path0": self.path0}


def is_python(path: str) -> bool:
    return bool(_PYTHON.match(os.path.basename(path)))


def find_entry_point(command: str, args: tuple[str, ...]) -> tuple[EntryPoint, tuple[str, ...]] | None:
    """The entry point of ``command args`` and the instance's ``sys.argv``, or None if not one of
    the recognised shapes (then the server is spawned)."""
    if not os.path.isabs(command):
        return None
    if is_python(command):
        if len(args) >= 2 and args[0] == "-m":
            entry = EntryPoint(command, "module", args[1], path0="/")
            return entry, (args[1], *args[2:])
        if args and not args[0].startswith("-") and args[0].endswith(".py") and os.path.isabs(args[0]):
            script = args[0]
            if not os.path.isfile(script):
                return None
            entry = EntryPoint(command, "script", script, argv0=script, path0=os.path.dirname(script))
            return entry, args
        return None
    return _console_script(command, args)


def _console_script(command: str, args: tuple[str, ...]) -> tuple[EntryPoint, tuple[str, ...]] | None:
    try:
        with open(command, "rb") as script:
            head = script.read(_HEAD_BYTES).decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    first, _, body = head.partition("\n")
    interpreter = _shebang_python(first)
    if interpreter is None:
        return None
    imported = _CONSOLE_IMPORT.search(body)
    called = _CONSOLE_CALL.search(body)
    if imported is None or called is None or imported.group(2) != called.group(1):
        return None
    entry = EntryPoint(
        interpreter,
        "callable",
        imported.group(1),
        attr=imported.group(2),
        argv0=command,
        path0=os.path.dirname(command),
    )
    return entry, (command, *args)


def _shebang_python(line: str) -> str | None:
    if not line.startswith("#!"):
        return None
    words = line[2:].split()
    if len(words) == 2 and os.path.basename(words[0]) == "env":
        words = words[1:]  # "#!/usr/bin/env python3": look the name up on PATH
        found = [Path(d) / words[0] for d in os.environ.get("PATH", "").split(os.pathsep) if d]
        words = [str(next((p for p in found if p.is_file()), words[0]))]
    if len(words) != 1 or not os.path.isabs(words[0]) or not is_python(words[0]):
        return None
    return words[0]
