"""Per-tool annotation overrides in the registry: the operator's word wins over the server's MCP
hints (which MCP calls untrusted), a loosening override names who vouched for it, and the effective
annotations reach ``ToolInfo`` (with the MCP defaults for hints a server leaves out)."""

from __future__ import annotations

import re
from pathlib import Path

import mcp_types
import pytest
from mcp import Client

from agent_runtime.errors import ConfigError
from agent_runtime.settings import ToolSettings
from agent_runtime.tools.convert import tool_info
from agent_runtime.tools.registry import ToolOverride, load_registry, resolve_launch
from tests.tools.tool_helpers import example_entry, load_example_module, make_registry


def listed(name: str = "t", **hints: bool | None) -> mcp_types.Tool:
    annotations = mcp_types.ToolAnnotations(**hints) if hints else None
    return mcp_types.Tool(name=name, input_schema={"type": "object"}, annotations=annotations)


def effective(tool: mcp_types.Tool, **override: object) -> tuple[bool, bool, bool, bool]:
    overrides = {tool.name: ToolOverride.model_validate(override)} if override else {}
    info = tool_info("srv", tool, overrides)
    return info.read_only, info.destructive, info.idempotent, info.open_world


def test_missing_hints_take_the_mcp_defaults_which_count_as_risky() -> None:
    assert effective(listed()) == (False, True, False, True)
    assert effective(listed(read_only_hint=True)) == (True, False, False, True)  # read-only: never destructive
    assert effective(listed(destructive_hint=False, open_world_hint=False)) == (False, False, False, False)


def test_the_registry_override_wins_over_the_hints_and_records_who_vouched() -> None:
    tool = listed("search", read_only_hint=True, open_world_hint=True)
    override = {"search": ToolOverride(open_world=False, vouched_by="alice (SEC-12)")}
    info = tool_info("srv", tool, override)
    assert (info.read_only, info.destructive, info.open_world) == (True, False, False)
    assert info.overridden == ("open_world",)
    assert info.vouched_by == "alice (SEC-12)"
    plain = tool_info("srv", listed("other"), override)
    assert plain.overridden == () and plain.vouched_by is None


def test_overrides_that_say_a_tool_changes_things_clear_read_only() -> None:
    ro = listed(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
    assert effective(ro, destructive=True) == (False, True, True, False)
    assert effective(ro, idempotent=False) == (False, True, False, False)
    assert effective(listed(), read_only=True, vouched_by="bob") == (True, False, False, True)
    assert effective(ro, read_only=False) == (False, True, True, False)  # no destructive hint: the MCP default
    assert effective(listed(destructive_hint=True), destructive=False, vouched_by="bob")[1] is False


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"read_only": True}, "read_only: true needs vouched_by"),
        ({"destructive": False, "open_world": False}, "destructive: false, open_world: false needs vouched_by"),
        ({"read_only": True, "destructive": True, "vouched_by": "x"}, "contradict"),
        ({"read_only": True, "idempotent": False, "vouched_by": "x"}, "contradict"),
        ({"vouched_by": "x"}, "vouched_by is set but no annotation is overridden"),
        ({"open_world": False, "vouched_by": ""}, "at least 1 character"),
    ],
)
def test_a_bad_override_is_refused_naming_file_server_and_tool(
    tmp_path: Path, override: dict[str, object], expected: str
) -> None:
    path = tmp_path / "tool_registry.yaml"
    entry = "\n".join(
        f"          {k}: {str(v).lower() if isinstance(v, bool) else repr(v)}" for k, v in override.items()
    )
    path.write_text(
        "servers:\n  - id: srv\n    type: local_stdio\n    config: {command: x}\n    tools:\n"
        f"      delete_all:\n{entry}\n",
        encoding="utf-8",
    )
    with pytest.raises(
        ConfigError, match=re.escape(f"{path}: servers[0] (id 'srv'): tools.delete_all") + ".*" + expected
    ):
        load_registry(path)


def test_overriding_toward_risk_needs_nobody_to_vouch() -> None:
    registry = make_registry(
        example_entry(tools={"echo": {"destructive": True, "open_world": True, "read_only": False}})
    )
    assert registry.servers[0].tool_overrides()["echo"].vouched_by is None


async def test_overrides_reach_the_tools_a_server_lists(tmp_path: Path) -> None:
    registry = make_registry(
        example_entry(
            tools={
                "write_note": {"destructive": False, "idempotent": True, "vouched_by": "ops: notes only append"},
                "echo": {"open_world": True},
                "add": {},
            }
        )
    )
    spec = resolve_launch(registry.servers[0], registry=registry, settings=ToolSettings(), workspace=tmp_path)
    assert set(spec.tool_overrides) == {"write_note", "echo"}  # an empty entry overrides nothing
    example = load_example_module()
    async with Client(example.build_server(tmp_path), mode="legacy") as client:
        tools = {t.name: tool_info("example", t, spec.tool_overrides) for t in (await client.list_tools()).tools}
    write = tools["write_note"]
    assert (write.read_only, write.destructive, write.idempotent, write.open_world) == (False, False, True, False)
    assert write.vouched_by == "ops: notes only append" and set(write.overridden) == {"destructive", "idempotent"}
    assert tools["echo"].open_world and tools["echo"].read_only  # still read-only, now open world
    add = tools["add"]
    assert (add.read_only, add.destructive, add.open_world, add.overridden) == (True, False, False, ())
