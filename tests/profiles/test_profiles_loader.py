"""The profiles file: read at start with errors naming file, profile and key; servers checked
against the registry; a reload that keeps the old profiles on error; check-config exits 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent_runtime.errors import InputValidationError
from agent_runtime.profiles import BUILTIN
from agent_runtime.profiles.loader import ProfileHolder, ProfilesError, load_profiles
from tests.support.harness import REGISTRY

GOOD = """
default: general
profiles:
  general: {}
  research:
    description: read-only research
    planner: {system_prompt: "Plan research in at most {max_steps} steps.", model: gpt-small}
    executor: {system_prompt: "Research carefully."}
    servers: [example]
    limits: {max_steps_per_plan: 3, max_parallel_steps: 1}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "profiles.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_valid_file_loads_every_profile_and_names_the_default(tmp_path: Path) -> None:
    found = load_profiles(write(tmp_path, GOOD), servers=["example"])
    assert found.default == "general" and sorted(found.profiles) == ["general", "research"]
    research = found.choose("research")
    assert research.profile.planner.model == "gpt-small" and research.profile.servers == ["example"]
    assert research.limit("max_steps_per_plan", 12) == 3 and research.limit("max_turns_per_step", 10) == 10
    assert found.choose(None).name == "general"
    assert research.hash.startswith("sha256:") and research.intact and research.hash != found.choose(None).hash


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("profiles: {a: {}}\n", "default profile 'default' is not defined (profiles: a)"),
        ("default: a\nprofiles: {a: {planner: {prompt: x}}}\n", "profile 'a': planner.prompt: Extra inputs"),
        ("default: a\nprofiles: {a: {limits: {max_turns_per_step: 0}}}\n", "profile 'a': limits.max_turns_per_step"),
        ("default: a\nprofiles: {a: {servers: [nope]}}\n", "profile 'a': servers: 'nope' is not a server"),
        ("- a\n", "the top level must be a mapping"),
        ("default: [\n", "not valid YAML"),
    ],
)
def test_a_bad_file_is_one_error_naming_file_profile_and_key(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ProfilesError) as info:
        load_profiles(path, servers=["example"])
    assert info.value.message.startswith(str(path)) and expected in info.value.message


def test_an_unknown_profile_name_is_an_input_error_naming_profile() -> None:
    with pytest.raises(InputValidationError) as info:
        BUILTIN.choose("nope")
    assert info.value.details == {"field": "profile"} and "known: default" in info.value.message


def test_a_reload_with_a_bad_file_keeps_the_profiles_in_force(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    holder = ProfileHolder(path, lambda: ["example"])
    before = holder.profiles
    path.write_text("default: gone\nprofiles: {}\n")
    with pytest.raises(ProfilesError):
        holder.reload()
    assert holder.profiles is before
    path.write_text(GOOD.replace("Research carefully.", "Research quickly."))
    assert holder.reload().choose("research").hash != before.choose("research").hash


def test_without_a_file_the_builtin_default_profile_is_empty() -> None:
    holder = ProfileHolder(None)
    default = holder.profiles.choose(None)
    assert default.name == "default" and default.profile.model_dump(exclude_none=True) == {
        "planner": {}, "executor": {}, "limits": {}
    }  # fmt: skip


def test_check_config_stops_with_exit_2_naming_the_profiles_file_and_key(tmp_path: Path) -> None:
    profiles = write(tmp_path, "default: a\nprofiles: {a: {servers: [missing]}}\n")
    config = tmp_path / "config.yaml"
    config.write_text(
        f"tools: {{registry_path: '{REGISTRY}'}}\nprofiles: {{path: '{profiles}'}}\n"
        "llm: {planner: {provider: offline}, executor: {provider: offline}}\n"
    )
    cli = Path(sys.executable).parent / "agent-runtime"
    result = subprocess.run(
        [str(cli), "check-config", "--config", str(config)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2, result.stderr
    assert f"{profiles}: profile 'a': servers: 'missing' is not a server of the tool registry" in result.stderr
    assert "Traceback" not in result.stderr
