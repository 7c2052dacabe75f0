"""Reading the policy file, with errors that name file, rule and key; a holder that reloads it.

A bad file is a :class:`PolicyError` (a :class:`~agent_runtime.errors.ConfigError`): at start the
service refuses to run, on reload the old policy stays in force (as with the tool registry).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agent_runtime.config_files import problem, read_yaml
from agent_runtime.errors import ConfigError
from agent_runtime.policy.model import DEFAULT_POLICY, Policy

_RULE_LISTS = ("plan_rules", "call_rules")
_DECISIONS = ("auto_approve", "require_approval", "deny", "allow", "require_call_approval")


class PolicyError(ConfigError):
    """The policy file is unusable; the message names file, rule (id or index), key and problem."""


def load_policy(path: Path | str) -> Policy:
    """Read and validate a policy file."""
    path = Path(path)
    return policy_from_data(read_yaml(path, "policy file", PolicyError), source=str(path))


def policy_from_data(data: Any, *, source: str = "<policy>") -> Policy:
    """Validate already-parsed YAML/JSON data (an empty document is the empty policy)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: the top level must be a mapping with plan_rules and/or call_rules")
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(_describe(exc, data, source)) from exc


def _describe(exc: ValidationError, data: dict[str, Any], source: str) -> str:
    problems = []
    for err in exc.errors():
        loc = list(err["loc"])
        where = source
        if len(loc) >= 2 and loc[0] in _RULE_LISTS and isinstance(loc[1], int):
            kind, index = str(loc[0]), loc[1]
            where += f": {kind}[{index}]"
            raw = data.get(kind)
            if isinstance(raw, list) and index < len(raw) and isinstance(raw[index], dict) and "id" in raw[index]:
                where += f" (id {raw[index]['id']!r})"
            loc = loc[2:]
            if loc and loc[0] in _DECISIONS:
                loc = loc[1:]  # the discriminator tag pydantic inserts
            if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
                loc = ["decision"]
        problems.append(problem(where, loc, str(err["msg"])))
    return "; ".join(problems)


class PolicyHolder:
    """The policy in force. ``reload()`` swaps in a re-read file, or raises and keeps the old one."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._policy = load_policy(path) if path is not None else DEFAULT_POLICY

    @property
    def policy(self) -> Policy:
        return self._policy

    def reload(self) -> Policy:
        """Re-read the file (nothing to do for the built-in policy). A :class:`PolicyError` leaves
        the current policy in force."""
        if self.path is not None:
            self._policy = load_policy(self.path)
        return self._policy
