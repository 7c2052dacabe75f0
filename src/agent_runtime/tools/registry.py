"""The tool registry (``tool_registry.yaml``): which MCP servers exist and how to start them.

Format::

    servers:
      - id: example                 # unique, no dots (tool names are ``server.tool``)
        enabled: true
        type: local_stdio           # or remote_http
        description: Example notes server
        config:                     # local_stdio: command, args, env, cwd
          command: ${PYTHON}
          args: ["${REGISTRY_DIR}/examples/mcp_server/server.py"]
          env: {API_TOKEN: "${MY_TOKEN}"}
        # remote_http config:  {url: "https://host/mcp", headers: {Authorization: "Bearer ${TOKEN}"}}
        prewarm: 0                  # idle instances kept ready (cwd-only servers, see warm.py)
        fork_server: true           # fork Python servers from a pre-imported parent (forkserver.py)
        tools: {write_note: {idempotent: false}}   # per-tool override of "safe to repeat"
        connect_timeout_seconds: 10 # optional, else the service setting
        call_timeout_seconds: 30    # optional, else the service setting

``${NAME}`` in command, args, env, cwd, url and headers is replaced when a server starts: from the
process environment (secrets are referenced by name, never stored in tasks or in this file), except
the special names ``${PYTHON}`` (the service's interpreter), ``${REGISTRY_DIR}`` (the folder of this
file), ``${WORKSPACE}`` (the task's workspace) and ``${TASK_ID}`` (the task's id; ``catalogue-discovery``
while the catalogue lists the server's tools). ``$$`` is a literal ``$``. A relative ``command``
containing a slash resolves against the registry folder; a relative ``cwd`` against the workspace,
which is also the default ``cwd``.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agent_runtime.config_files import problem, read_yaml
from agent_runtime.errors import ConfigError
from agent_runtime.settings import ToolSettings

SPECIAL_VARIABLES = ("PYTHON", "REGISTRY_DIR", "WORKSPACE", "TASK_ID")
REDACTED = "***"
MIN_SECRET_CHARS = 6
"""Injected values shorter than this are not redacted: no credible secret, and hiding every ``1`` or
``true`` would make a stderr tail unreadable."""
DISCOVERY_TASK_ID = "catalogue-discovery"
"""What ``${TASK_ID}`` becomes while the catalogue lists a server's tools (no task is involved)."""
_VARIABLE = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*|file:[^}]+)\})")
TASK_HEADER = "X-Agent-Runtime-Task-Id"
_SERVER_ID = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StdioConfig(_Model):
    command: str = Field(min_length=1)
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None


class HttpConfig(_Model):
    url: str = Field(pattern=r"^(https?://|\$\{)")
    headers: dict[str, str] = Field(default_factory=dict)


ANNOTATIONS = ("read_only", "destructive", "idempotent", "open_world")
"""The tool annotations a registry entry may override (MCP's ``*Hint`` annotations, untrusted)."""


class ToolOverride(_Model):
    """The operator's word on one tool's annotations; it wins over the server's MCP hints.

    An override that makes a tool look safer than the MCP defaults (``read_only: true``,
    ``destructive: false``, ``open_world: false``) needs ``vouched_by``: who checked the tool and
    stands for it. ``idempotent: false`` also clears ``read_only``, ``destructive: true`` too.
    """

    read_only: bool | None = None
    """``True``: the tool does not modify its environment (so it is not destructive either)."""
    destructive: bool | None = None
    """``False``: the tool only adds, never deletes or overwrites (meaningful when not read-only)."""
    idempotent: bool | None = None
    """``True``: safe to call again with the same arguments, whatever the server's hints say."""
    open_world: bool | None = None
    """``False``: the tool touches only a closed domain (the workspace), not the outside world."""
    vouched_by: str | None = Field(default=None, min_length=1, max_length=200)
    """Who vouched for this override (a person, team or ticket), kept with the tool's annotations."""

    @model_validator(mode="after")
    def _consistent_and_vouched(self) -> ToolOverride:
        if self.read_only and self.destructive:
            raise ValueError("read_only: true and destructive: true contradict each other")
        if self.read_only and self.idempotent is False:
            raise ValueError("read_only: true and idempotent: false contradict each other (a read is repeatable)")
        loosened = [
            f"{name}: {str(value).lower()}"
            for name, value, safe in (
                ("read_only", self.read_only, True),
                ("destructive", self.destructive, False),
                ("open_world", self.open_world, False),
            )
            if value is safe
        ]
        if loosened and not self.vouched_by:
            raise ValueError(f"{', '.join(loosened)} needs vouched_by (who checked the tool and stands for it)")
        if self.vouched_by and not self.annotations():
            raise ValueError("vouched_by is set but no annotation is overridden")
        return self

    def annotations(self) -> dict[str, bool]:
        """The annotations this override sets."""
        return {name: value for name in ANNOTATIONS if (value := getattr(self, name)) is not None}


class _ServerBase(_Model):
    id: str = Field(pattern=_SERVER_ID)
    enabled: bool = True
    description: str = ""
    prewarm: int = Field(default=0, ge=0, le=32)
    tools: dict[str, ToolOverride] = Field(default_factory=dict)
    connect_timeout_seconds: float | None = Field(default=None, gt=0)
    call_timeout_seconds: float | None = Field(default=None, gt=0)
    scope: Literal["task", "shared"] = "task"
    """``task``: an instance per task, in its workspace. ``shared``: long-lived instances that serve
    every task's calls (``shared.py``); such a server sees every task's calls."""
    instances: int = Field(default=1, ge=1, le=32)
    """How many instances a ``shared`` server runs (calls go to the least busy)."""

    @model_validator(mode="after")
    def _instances_need_shared(self) -> _ServerBase:
        if self.instances != 1 and self.scope != "shared":
            raise ValueError("instances applies to scope: shared servers only")
        if self.scope == "shared" and self.prewarm:
            raise ValueError("prewarm applies to scope: task servers only (a shared server is always running)")
        return self

    def _per_task_texts(self) -> list[str]:
        return []

    @model_validator(mode="after")
    def _shared_needs_no_task(self) -> _ServerBase:
        if self.scope == "shared" and any(
            "${WORKSPACE}" in text or "${TASK_ID}" in text for text in self._per_task_texts()
        ):
            raise ValueError(
                "scope: shared serves every task from one instance, so it cannot take ${WORKSPACE} or ${TASK_ID}"
            )
        return self

    @field_validator("id")
    @classmethod
    def _no_dots(cls, value: str) -> str:
        if "." in value:  # the pattern already forbids it; this names the reason
            raise ValueError("server ids may not contain dots (tool names are 'server.tool')")
        return value

    def tool_overrides(self) -> dict[str, ToolOverride]:
        """The per-tool overrides that set at least one annotation."""
        return {name: o for name, o in self.tools.items() if o.annotations()}


class StdioServer(_ServerBase):
    type: Literal["local_stdio"]
    config: StdioConfig
    fork_server: bool = True
    """Start a Python server's instances by forking a process that has already imported it
    (see ``forkserver.py``); ``false`` spawns every instance from scratch."""

    def uses_workspace_placeholder(self) -> bool:
        return any("${WORKSPACE}" in text or "${TASK_ID}" in text for text in self._per_task_texts())

    def _per_task_texts(self) -> list[str]:
        return [self.config.command, *self.config.args, *self.config.env.values(), self.config.cwd or ""]

    @model_validator(mode="after")
    def _shared_needs_no_cwd(self) -> StdioServer:
        if self.scope == "shared" and self.config.cwd is not None:
            raise ValueError("scope: shared serves every task from one instance, so it cannot take a cwd")
        return self

    @model_validator(mode="after")
    def _prewarm_needs_cwd_only(self) -> StdioServer:
        if self.prewarm and (self.uses_workspace_placeholder() or self.config.cwd is not None):
            raise ValueError(
                "prewarm needs a server that gets the workspace only as its working directory "
                "(no ${WORKSPACE} in command/args/env and no cwd)"
            )
        return self


class HttpServer(_ServerBase):
    type: Literal["remote_http"]
    config: HttpConfig

    def _per_task_texts(self) -> list[str]:
        return [self.config.url, *self.config.headers.values()]

    @model_validator(mode="after")
    def _no_prewarm(self) -> HttpServer:
        if self.prewarm:
            raise ValueError("prewarm applies to local_stdio servers only")
        return self


ServerEntry = Annotated[StdioServer | HttpServer, Field(discriminator="type")]


class _RegistryFile(_Model):
    servers: list[ServerEntry] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_ids(self) -> _RegistryFile:
        seen: dict[str, int] = {}
        for index, server in enumerate(self.servers):
            if server.id in seen:
                raise ValueError(f"servers[{index}]: id {server.id!r} is already used by servers[{seen[server.id]}]")
            seen[server.id] = index
        return self


@dataclass(frozen=True)
class Registry:
    """The parsed registry. ``base_dir`` anchors ``${REGISTRY_DIR}`` and relative commands."""

    servers: tuple[StdioServer | HttpServer, ...]
    base_dir: Path
    path: Path | None = None

    def get(self, server_id: str) -> StdioServer | HttpServer | None:
        return next((s for s in self.servers if s.id == server_id), None)

    def enabled(self) -> list[StdioServer | HttpServer]:
        return [s for s in self.servers if s.enabled]

    @classmethod
    def from_data(cls, data: Any, *, base_dir: Path, source: str = "<registry>") -> Registry:
        """Validate already-parsed YAML/JSON data; errors become :class:`ConfigError`."""
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: the top level must be a mapping with a 'servers' list")
        try:
            parsed = _RegistryFile.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(_describe(exc, data, source)) from exc
        return cls(servers=tuple(parsed.servers), base_dir=base_dir.resolve())


def load_registry(path: Path | str) -> Registry:
    """Read and validate a registry file; raise :class:`ConfigError` naming file, server, key, problem."""
    path = Path(path)
    data = read_yaml(path, "tool registry")
    registry = Registry.from_data(data, base_dir=path.parent, source=str(path))
    return Registry(servers=registry.servers, base_dir=registry.base_dir, path=path.resolve())


def _describe(exc: ValidationError, data: dict[str, Any], source: str) -> str:
    problems = []
    for err in exc.errors():
        loc = list(err["loc"])
        where = source
        if len(loc) >= 2 and loc[0] == "servers" and isinstance(loc[1], int):
            index = loc[1]
            where += f": servers[{index}]"
            raw = data.get("servers") or []
            if index < len(raw) and isinstance(raw[index], dict) and "id" in raw[index]:
                where += f" (id {raw[index]['id']!r})"
            loc = loc[2:]
            if loc and loc[0] in ("local_stdio", "remote_http"):
                loc = loc[1:]  # the discriminator tag pydantic inserts
        problems.append(problem(where, loc, str(err["msg"])))
    return "; ".join(problems)


# --- start-time resolution -------------------------------------------------------------------


@dataclass(frozen=True)
class LaunchSpec:
    """Everything needed to start one server instance, with every ``${...}`` replaced."""

    server_id: str
    transport: Literal["local_stdio", "remote_http"]
    connect_timeout: float
    call_timeout: float
    command: str = ""
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    url: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    tool_overrides: Mapping[str, ToolOverride] = field(default_factory=dict)
    """The registry's per-tool annotation overrides (``tools:`` of the entry), by tool name."""
    fork_server: bool = False
    """Whether a fork server may start this instance (a Python entry point is still required)."""
    static_env: Mapping[str, str] = field(default_factory=dict)
    """The part of ``env`` that is the same for every task (no ``${WORKSPACE}``/``${TASK_ID}``, no
    task ``env``): what a fork server imports the server's modules with."""
    secrets: tuple[str, ...] = ()
    """What the registry injected that may be secret (see :func:`resolve_launch`), longest first:
    :meth:`redact` hides them in the server's stderr tail and error texts."""

    def redact(self, text: str) -> str:
        """``text`` with every injected value of this server replaced by ``***``."""
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


def expand(text: str, variables: Mapping[str, str], where: str, injected: list[str] | None = None) -> str:
    """Replace ``${NAME}`` from ``variables`` and ``$$`` by ``$``; a missing name is a ConfigError.
    ``injected`` collects the values of ``${file:...}`` and of every non-special ``${NAME}``."""

    def replace(match: re.Match[str]) -> str:
        if match.group(1):
            return "$"
        name = match.group(2)
        if name.startswith("file:"):
            value = _read_secret_file(name[len("file:") :], where)
        elif name not in variables:
            raise ConfigError(f"{where}: ${{{name}}} is not set in the service's environment")
        else:
            value = variables[name]
        if injected is not None and name not in SPECIAL_VARIABLES:
            injected.append(value)
        return value

    return _VARIABLE.sub(replace, text)


def _read_secret_file(path: str, where: str) -> str:
    """``${file:/run/secrets/token}``: a secret mounted as a file, read at start time, never stored."""
    try:
        return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read secret file {path!r}: {exc.strerror}") from exc


def resolve_launch(
    entry: StdioServer | HttpServer,
    *,
    registry: Registry,
    settings: ToolSettings,
    workspace: Path,
    extra_env: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    task_id: str | None = None,
) -> LaunchSpec:
    """Fill the entry's placeholders for one start in ``workspace``; ``extra_env`` goes to stdio servers.

    With ``task_id``, ``${TASK_ID}`` is available and remote servers get a ``X-Agent-Runtime-Task-Id``
    header, so a remote server can scope its state to the task.
    """
    variables = dict(os.environ if environ is None else environ)
    variables.update(PYTHON=sys.executable, REGISTRY_DIR=str(registry.base_dir), WORKSPACE=str(workspace))
    if task_id is not None:
        variables["TASK_ID"] = task_id
    prefix = f"{registry.path or 'registry'}: server {entry.id!r}: config"
    injected: list[str] = []
    common: dict[str, Any] = {
        "server_id": entry.id,
        "connect_timeout": entry.connect_timeout_seconds or settings.connect_timeout_seconds,
        "call_timeout": entry.call_timeout_seconds or settings.call_timeout_seconds,
        "tool_overrides": entry.tool_overrides(),
    }
    if isinstance(entry, HttpServer):
        headers = {k: expand(v, variables, f"{prefix}.headers.{k}", injected) for k, v in entry.config.headers.items()}
        injected.extend(v for v in entry.config.headers.values() if "$" not in v)  # written in the registry
        if task_id is not None:
            headers.setdefault(TASK_HEADER, task_id)
        url = expand(entry.config.url, variables, f"{prefix}.url", injected)
        return LaunchSpec(transport="remote_http", url=url, headers=headers, secrets=_secrets(injected), **common)
    cfg = entry.config
    command = expand(cfg.command, variables, f"{prefix}.command", injected)
    if "/" in command and not Path(command).is_absolute():
        command = str(registry.base_dir / command)
    args = tuple(expand(a, variables, f"{prefix}.args[{i}]", injected) for i, a in enumerate(cfg.args))
    env = {k: expand(v, variables, f"{prefix}.env.{k}", injected) for k, v in cfg.env.items()}
    injected.extend(v for v in cfg.env.values() if "$" not in v)  # written in the registry itself
    static_env = {k: env[k] for k, v in cfg.env.items() if "${WORKSPACE}" not in v and "${TASK_ID}" not in v}
    env.update(extra_env or {})
    for key in extra_env or {}:
        static_env.pop(key, None)
    cwd = workspace if cfg.cwd is None else workspace / expand(cfg.cwd, variables, f"{prefix}.cwd", injected)
    return LaunchSpec(
        transport="local_stdio",
        command=command,
        args=args,
        env=env,
        cwd=cwd,
        fork_server=entry.fork_server,
        static_env=static_env,
        secrets=_secrets(injected),
        **common,
    )


def _secrets(injected: list[str]) -> tuple[str, ...]:
    """The injected values worth redacting, longest first (so a secret inside another goes too)."""
    return tuple(sorted({v for v in injected if len(v) >= MIN_SECRET_CHARS}, key=len, reverse=True))
