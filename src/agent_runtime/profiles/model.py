"""The profiles file's shape, and the snapshot a task keeps of its profile.

A profile left empty is today's behaviour: the built-in prompts (``agents/prompts.py``), each
role's configured model, every enabled tool server and the service's ``limits``. What a profile
sets replaces exactly that. The snapshot (:class:`TaskProfile`) is the profile as written in the
file, with its name and a ``sha256:`` hash of that content: the task keeps it for its whole life,
so a reload never changes what an already submitted (or approved) task runs.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agent_runtime.domain.records import TaskRecord
from agent_runtime.errors import InputValidationError, ServiceError

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""A profile name (also what ``profile`` on submit must look like)."""
DEFAULT_NAME = "default"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RoleProfile(_Strict):
    system_prompt: str | None = Field(default=None, min_length=1, max_length=50_000)
    """Replaces the role's built-in system prompt. In the planner's, ``{max_steps}`` is replaced
    by the plan's step limit."""
    model: str | None = Field(default=None, min_length=1, max_length=200)
    """Another model of the role's configured provider (same key, base URL and fallbacks)."""


class ProfileLimits(_Strict):
    """The task limits a profile may set (each replaces ``limits.<name>`` for its tasks)."""

    max_steps_per_plan: int | None = Field(default=None, ge=1)
    max_tool_calls_per_step: int | None = Field(default=None, ge=1)
    max_turns_per_step: int | None = Field(default=None, ge=1)
    max_parallel_steps: int | None = Field(default=None, ge=1)


class Profile(_Strict):
    description: str | None = Field(default=None, max_length=2000)
    planner: RoleProfile = Field(default_factory=RoleProfile)
    executor: RoleProfile = Field(default_factory=RoleProfile)
    servers: list[str] | None = None
    """The tool servers (registry ids) whose tools the planner may use; ``None``: every one."""
    limits: ProfileLimits = Field(default_factory=ProfileLimits)

    def content_hash(self) -> str:
        """``sha256:`` of the profile's content (canonical JSON; unset keys are left out)."""
        canonical = json.dumps(self.model_dump(mode="json", exclude_none=True), sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


class ProfileSet(_Strict):
    """The whole file: ``default`` names the profile of a task that names none."""

    default: str = Field(default=DEFAULT_NAME, pattern=NAME)
    profiles: dict[str, Profile] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _names(self) -> ProfileSet:
        bad = [name for name in self.profiles if not re.match(NAME, name)]
        if bad:
            raise ValueError(f"profile names must match {NAME}: {', '.join(map(repr, bad))}")
        if self.default not in self.profiles:
            known = ", ".join(sorted(self.profiles)) or "none"
            raise ValueError(f"default profile {self.default!r} is not defined (profiles: {known})")
        return self

    def get(self, name: str | None) -> TaskProfile | None:
        """The snapshot of profile ``name`` (the default when ``None``); ``None`` if unknown."""
        name = name or self.default
        profile = self.profiles.get(name)
        return TaskProfile.of(name, profile) if profile is not None else None

    def choose(self, name: str | None) -> TaskProfile:
        """As :meth:`get`; an unknown name is a 422 naming ``profile``."""
        found = self.get(name)
        if found is None:
            known = ", ".join(sorted(self.profiles))
            raise InputValidationError(f"unknown profile {name!r}; known: {known}", details={"field": "profile"})
        return found


BUILTIN = ProfileSet(profiles={DEFAULT_NAME: Profile()})
"""No profiles file: one empty profile, ``default`` (today's prompts, models, servers, limits)."""


class TaskProfile(_Strict):
    """What a task keeps of its profile: the name, the content and its hash."""

    name: str
    hash: str
    profile: Profile

    @classmethod
    def of(cls, name: str, profile: Profile) -> TaskProfile:
        return cls(name=name, hash=profile.content_hash(), profile=profile)

    @classmethod
    def of_task(cls, task: TaskRecord) -> TaskProfile:
        """The snapshot ``task`` took at submit (a task from before profiles: the built-in profile).
        One that no longer matches its recorded hash is refused (:class:`ServiceError`): the task
        fails rather than run instructions nobody approved."""
        if task.profile is None or task.profile_content is None:
            return BUILTIN_PROFILE
        found = cls(
            name=task.profile, hash=task.profile_hash or "", profile=Profile.model_validate(task.profile_content)
        )
        if not found.intact:
            raise ServiceError(
                f"the task's profile {task.profile!r} does not match its recorded hash {task.profile_hash}",
                details={"profile": task.profile, "profile_hash": task.profile_hash},
            )
        return found

    def row(self) -> tuple[str, str, dict[str, Any]]:
        """(name, hash, content) as the task row stores them."""
        return self.name, self.hash, self.profile.model_dump(mode="json", exclude_none=True)

    @property
    def intact(self) -> bool:
        """The stored content still hashes to the stored hash."""
        return self.profile.content_hash() == self.hash

    def allows_server(self, server_id: str) -> bool:
        return self.profile.servers is None or server_id in self.profile.servers

    def limit(self, name: str, default: int) -> int:
        value = getattr(self.profile.limits, name)
        return default if value is None else int(value)


BUILTIN_PROFILE = TaskProfile.of(DEFAULT_NAME, Profile())
