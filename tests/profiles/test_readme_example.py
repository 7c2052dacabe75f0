"""The profiles example in README.md loads against the shipped tool registry and says what it says."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from agent_runtime.profiles.loader import profiles_from_data
from agent_runtime.tools.registry import load_registry

REPO = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"```yaml\n(# profiles\.yaml\n.*?)```", re.DOTALL)


def test_the_readme_profiles_example_loads_against_the_shipped_registry() -> None:
    [block] = BLOCK.findall((REPO / "README.md").read_text(encoding="utf-8"))
    servers = [s.id for s in load_registry(REPO / "tool_registry.yaml").servers]
    found = profiles_from_data(yaml.safe_load(block), source="README", servers=servers)
    assert found.choose(None).name == "general"
    careful = found.choose("careful")
    assert careful.profile.servers == ["example"] and careful.limit("max_steps_per_plan", 12) == 3
    assert "{max_steps}" in (careful.profile.planner.system_prompt or "")
