"""Where the commands write: JSON for scripts, rich on a terminal, plain aligned lines otherwise.

Service text (prompts, plan summaries, tool results) is never read as rich markup: the offline
model's ``[offline-test]`` prefix, for one, would be taken for a style tag.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from pydantic import BaseModel
from rich.console import Console
from rich.table import Table
from rich.text import Text

from agent_runtime.client import APIError


class Output:
    def __init__(self, as_json: bool, stdout: TextIO | None = None, stderr: TextIO | None = None) -> None:
        self.as_json = as_json
        self._stdout = stdout
        self.console = Console(file=stdout, highlight=False)
        self.errors = Console(file=stderr or sys.stderr, highlight=False, soft_wrap=True)
        if not self.console.is_terminal:
            self.console.soft_wrap = True  # plain lines stay whole in pipes and logs

    @property
    def rich(self) -> bool:
        """A terminal that shows styles and live displays (``watch``)."""
        return self.console.is_terminal and not self.as_json

    # --- JSON ----------------------------------------------------------------------------------

    def data(self, value: BaseModel | Sequence[BaseModel] | dict[str, Any], *, compact: bool = False) -> None:
        """One JSON document on stdout (``compact``: on one line, as ``watch --json`` writes events)."""
        plain = _plain(value)
        text = json.dumps(plain, ensure_ascii=False, separators=(",", ":")) if compact else json.dumps(plain, indent=2)
        stream = self._stdout or sys.stdout
        stream.write(text + "\n")
        stream.flush()

    def raw(self, content: bytes) -> None:
        """A file's bytes on stdout as they are (``tasks download … --output -``)."""
        stream = self._stdout or sys.stdout
        buffer = getattr(stream, "buffer", None)
        if buffer is not None:
            stream.flush()
            buffer.write(content)
            buffer.flush()
        else:  # a text-only stream (a test's StringIO): the bytes as text
            stream.write(content.decode("utf-8", errors="replace"))

    # --- text ----------------------------------------------------------------------------------

    def line(self, *parts: str | tuple[str, str]) -> None:
        """A line of plain strings and ``(text, style)`` pieces; the text is never read as markup."""
        self.console.print(Text.assemble(*parts))

    def note(self, text: str) -> None:
        """A hint for the person at the terminal (stderr, so stdout stays the command's answer)."""
        if not self.as_json:
            self.errors.print(Text(text, style="dim"))

    def error(
        self, code: str, message: str, problems: Sequence[str] = (), details: dict[str, Any] | None = None
    ) -> None:
        """The command failed: the message on stderr; with ``--json`` also, as the command's one
        document on stdout, ``{"error": {"code", "message", "details"}}`` (the service's own error shape)."""
        if self.as_json:
            self.data({"error": {"code": code, "message": message, "details": details or {}}})
        self.complain(message, problems)

    def complain(self, message: str, problems: Sequence[str] = ()) -> None:
        """An error message on stderr only (``--json`` or not): for people, not scripts."""
        self.errors.print(Text.assemble(("agent-runtime: error: ", "bold red"), message))
        for problem in problems:
            self.errors.print(Text(f"  - {problem}"))

    def api_error(self, exc: APIError, hint: str | None = None) -> None:
        """The service refused: its error as it sent it (``--json``), ``code: message`` on stderr
        with the validation problems and ``hint`` (what to do about it) below."""
        if self.as_json:
            self.data({"error": {"code": exc.code, "message": exc.message, "details": exc.details}})
        self.complain(f"{exc.code}: {exc.message}", [*problems_of(exc), *([hint] if hint else [])])

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[str]], *, title: str | None = None) -> None:
        """A rich table on a terminal; otherwise a header line and aligned columns (awk-friendly)."""
        if self.console.is_terminal:
            table = Table(*headers, title=title, title_justify="left", header_style="bold")
            for row in rows:
                table.add_row(*(Text(cell) for cell in row))
            self.console.print(table)
            return
        if title:
            self.line(title)
        widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
        for row in [list(headers), *rows]:
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
            self.console.print(Text("  ".join(cells).rstrip()))


def _plain(value: BaseModel | Sequence[BaseModel] | dict[str, Any]) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {k: _plain(v) if isinstance(v, BaseModel | list) else v for k, v in value.items()}
    return [_plain(v) if isinstance(v, BaseModel) else v for v in value]


def problems_of(exc: APIError) -> list[str]:
    """The service's validation problems as lines (an edited plan's ``problems``, a body's ``fields``)."""
    details = exc.details
    if isinstance(details.get("problems"), list):
        return [str(p) for p in details["problems"]]
    if isinstance(details.get("fields"), list):
        return [f"{f.get('field')}: {f.get('message')}" for f in details["fields"] if isinstance(f, dict)]
    return []
