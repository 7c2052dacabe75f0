"""Reading the profiles file, with errors that name file, profile and key; a holder that reloads it.

A bad file is a :class:`ProfilesError` (a :class:`~agent_runtime.errors.ConfigError`): at start the
service refuses to run (``check-config``/``serve`` exit 2), on reload the old profiles stay in
force, as with the policy file. A profile's ``servers`` must name servers of the tool registry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agent_runtime.config_files import problem, read_yaml
from agent_runtime.errors import ConfigError
from agent_runtime.profiles.model import BUILTIN, ProfileSet


class ProfilesError(ConfigError):
    """The profiles file is unusable; the message names file, profile, key and problem."""


def load_profiles(path: Path | str, servers: Iterable[str] | None = None) -> ProfileSet:
    """Read and validate a profiles file; ``servers``: the registry's server ids, which every
    profile's ``servers`` must be among (not checked when ``None``)."""
    path = Path(path)
    return profiles_from_data(read_yaml(path, "profiles file", ProfilesError), source=str(path), servers=servers)


def profiles_from_data(data: Any, *, source: str = "<profiles>", servers: Iterable[str] | None = None) -> ProfileSet:
    if not isinstance(data, dict):
        raise ProfilesError(f"{source}: the top level must be a mapping with default and profiles")
    try:
        found = ProfileSet.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = list(err["loc"])
            where = source
            if len(loc) >= 2 and loc[0] == "profiles":
                where, loc = f"{source}: profile {loc[1]!r}", loc[2:]
            problems.append(problem(where, loc, str(err["msg"])))
        raise ProfilesError("; ".join(problems)) from exc
    if servers is not None:
        known = set(servers)
        unknown = [
            problem(f"{source}: profile {name!r}", ["servers"], f"{sid!r} is not a server of the tool registry "
                    f"(known: {', '.join(sorted(known)) or 'none'})")
            for name, profile in found.profiles.items()
            for sid in profile.servers or ()
            if sid not in known
        ]  # fmt: skip
        if unknown:
            raise ProfilesError("; ".join(unknown))
    return found


class ProfileHolder:
    """The profiles in force. ``reload()`` swaps in a re-read file, or raises and keeps the old ones.

    ``servers``: the tool registry's server ids now (read at every load, so a reload checks the
    profiles against the registry as it is then)."""

    def __init__(self, path: Path | None, servers: Callable[[], Iterable[str]] | None = None) -> None:
        self.path = path
        self._servers = servers
        self._profiles = self._load() if path is not None else BUILTIN

    def _load(self) -> ProfileSet:
        assert self.path is not None
        return load_profiles(self.path, self._servers() if self._servers is not None else None)

    @property
    def profiles(self) -> ProfileSet:
        return self._profiles

    def reload(self) -> ProfileSet:
        """Re-read the file (nothing to do for the built-in profile). A :class:`ProfilesError`
        leaves the current profiles in force."""
        if self.path is not None:
            self._profiles = self._load()
        return self._profiles
