"""Reading the service's YAML files (tool registry, policy, profiles) with errors that name file, key and problem.

One wording for every file: ``<file>: cannot read <what>: <reason>``, ``<file>: not valid YAML: …``,
and for a validation error ``<file>: <where>: <key>: <problem>`` joined with ``; ``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from agent_runtime.errors import ConfigError


def read_yaml(path: Path, what: str, error: type[ConfigError] = ConfigError) -> Any:
    """The parsed document of ``path`` (``None`` for an empty file); ``error`` when unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"{path}: cannot read {what}: {exc.strerror}") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {exc}") from exc


def problem(where: str, loc: Sequence[Any], message: str) -> str:
    """One problem as ``where: key: message`` (``where: message`` without a key)."""
    key = ".".join(str(part) for part in loc)
    message = message.removeprefix("Value error, ")
    return f"{where}: {key}: {message}" if key else f"{where}: {message}"


def describe(exc: ValidationError, source: str) -> str:
    """Every problem of ``exc``, each naming ``source`` and the key."""
    return "; ".join(problem(source, err["loc"], str(err["msg"])) for err in exc.errors())
