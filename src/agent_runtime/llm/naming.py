"""Reversible tool-name mapping between our ``server.tool`` names and provider-safe names.

OpenAI and Anthropic accept tool names matching ``^[a-zA-Z0-9_-]{1,64}$``. The plain mapping
replaces the namespace dot with ``__`` and every other unsafe character with ``_``
(``files.read_file`` -> ``files__read_file``). When that would be too long, or two different names
would land on the same wire name, each affected name gets a short hash suffix instead. The suffix
depends only on the name, so the mapping does not depend on the order tools are listed in.

A :class:`ToolNameMap` is built per request from the offered tools; names met later (tool calls
in the history whose tool is no longer offered) are added on the fly.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

MAX_LEN = 64
WIRE_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]")
_HASH_LEN = 8


def plain_wire_name(name: str) -> str:
    """The readable provider-safe form of ``name`` (may be too long; see :class:`ToolNameMap`)."""
    server, sep, tool = name.partition(".")
    if not sep:
        return _UNSAFE.sub("_", name) or "_"
    return f"{_UNSAFE.sub('_', server)}__{_UNSAFE.sub('_', tool)}"


def hashed_wire_name(name: str) -> str:
    """A provider-safe name that embeds a hash of ``name``: unique and at most 64 characters."""
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:_HASH_LEN]
    stem = plain_wire_name(name)[: MAX_LEN - _HASH_LEN - 1].rstrip("_") or "tool"
    return f"{stem}_{digest}"


class ToolNameMap:
    """A two-way mapping ``server.tool`` <-> wire name, collision-free within one map."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        self._to_wire: dict[str, str] = {}
        self._from_wire: dict[str, str] = {}
        unique = sorted(set(names))
        plain_counts: dict[str, int] = {}
        for name in unique:
            plain = plain_wire_name(name)
            plain_counts[plain] = plain_counts.get(plain, 0) + 1
        for name in unique:
            plain = plain_wire_name(name)
            ambiguous = plain_counts[plain] > 1 or len(plain) > MAX_LEN
            self._add(name, hashed_wire_name(name) if ambiguous else plain)

    def _add(self, name: str, wire: str) -> str:
        if wire in self._from_wire and self._from_wire[wire] != name:
            wire = hashed_wire_name(name)
            if wire in self._from_wire and self._from_wire[wire] != name:
                raise ValueError(f"tool names {name!r} and {self._from_wire[wire]!r} collide")
        self._to_wire[name] = wire
        self._from_wire[wire] = name
        return wire

    def to_wire(self, name: str) -> str:
        """The wire name for ``name``; names not seen before are added."""
        known = self._to_wire.get(name)
        if known is not None:
            return known
        plain = plain_wire_name(name)
        return self._add(name, plain if len(plain) <= MAX_LEN else hashed_wire_name(name))

    def from_wire(self, wire: str) -> str:
        """Our name for a wire name the model used.

        A name the map never produced (a model inventing a tool) is returned in best-effort
        ``server.tool`` form so the caller's allow-list rejects it by its recognisable name.
        """
        known = self._from_wire.get(wire)
        if known is not None:
            return known
        server, sep, tool = wire.partition("__")
        return f"{server}.{tool}" if sep and server and tool else wire

    def __contains__(self, name: object) -> bool:
        return name in self._to_wire

    def __len__(self) -> int:
        return len(self._to_wire)
