"""The policy file: read at start, errors that name file, rule and key, reload that keeps the old
policy on error, and the settings sections that go with it."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from agent_runtime.errors import ConfigError
from agent_runtime.policy import DEFAULT_POLICY, PolicyError, PolicyHolder, load_policy
from agent_runtime.policy.model import AutoApproveRule, DenyCallRule, RequireApprovalRule, RequireCallApprovalRule
from agent_runtime.settings import Budget, load_settings

GOOD = """
plan_rules:
  - id: read-only
    description: plans that only read pass on their own
    match: {all_tools: {read_only: true}}
    decision: auto_approve
  - id: four-eyes
    match: {any_tool: {destructive: true}}
    decision: require_approval
    roles: [admin]
    count: 2
    expire_after: 2h
    on_expiry: cancel
    sticky: true
    budget: {cost_usd: 5, tool_calls: 40}
call_rules:
  - id: gate-deletes
    match:
      name: ["gh.delete_*"]
      arguments: {force: {equals: true}, path: {glob: "/srv/*"}, ref: {regex: "^main$"}, mode: {in: [a, b]}}
    decision: require_call_approval
    expire_after: 30m
  - id: no-shell
    match: {server: [shell]}
    decision: deny
    reason: no shell access
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_valid_file_loads_every_rule_with_its_options(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, GOOD))
    auto, gate = policy.plan_rules
    assert isinstance(auto, AutoApproveRule) and not auto.allow_risky
    assert isinstance(gate, RequireApprovalRule)
    assert (gate.roles, gate.count, gate.expire_after, gate.on_expiry, gate.sticky) == (
        ["admin"],
        2,
        timedelta(hours=2),
        "cancel",
        True,
    )
    assert gate.budget == Budget(cost_usd=5, tool_calls=40)
    call_gate, deny = policy.call_rules
    assert isinstance(call_gate, RequireCallApprovalRule) and call_gate.expire_after == timedelta(minutes=30)
    assert call_gate.match.arguments is not None
    assert [m.kind for m in call_gate.match.arguments.values()] == ["equals", "glob", "regex", "in"]
    assert isinstance(deny, DenyCallRule) and deny.reason == "no shell access"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "plan_rules:\n  - id: r1\n    decision: auto_aprove\n",
            r"plan_rules\[0\] \(id 'r1'\): decision: Input tag 'auto_aprove'",
        ),
        ("plan_rules:\n  - id: r1\n", r"plan_rules\[0\] \(id 'r1'\): decision: Unable to extract tag"),
        (
            "plan_rules:\n  - id: r1\n    decision: deny\n    match: {any_tool: {read_onyl: true}}\n",
            r"plan_rules\[0\] \(id 'r1'\): match\.any_tool\.read_onyl: Extra inputs are not permitted",
        ),
        (
            "plan_rules:\n  - id: ok\n    decision: deny\n  - decision: deny\n    sticky: true\n    id: d\n",
            r"plan_rules\[1\] \(id 'd'\): sticky: Extra inputs are not permitted",
        ),
        (
            "plan_rules:\n  - decision: require_approval\n    count: 0\n",
            r"plan_rules\[0\]: id: Field required.*plan_rules\[0\]: count: Input should be greater than or equal to 1",
        ),
        (
            "plan_rules:\n  - id: r\n    decision: require_approval\n    on_expiry: approve\n",
            r"plan_rules\[0\] \(id 'r'\): on_expiry needs expire_after",
        ),
        (
            "plan_rules:\n  - id: r\n    decision: require_approval\n    roles: [viewer]\n",
            r"plan_rules\[0\] \(id 'r'\): roles: role\(s\) viewer cannot decide approvals",
        ),
        (
            "plan_rules:\n  - id: r\n    decision: deny\n    match: {roles: [boss]}\n",
            r"plan_rules\[0\] \(id 'r'\): match\.roles: unknown role\(s\) boss",
        ),
        (
            "plan_rules:\n  - id: r\n    decision: require_approval\n    expire_after: soon\n",
            r"plan_rules\[0\] \(id 'r'\): expire_after: ",
        ),
        (
            "plan_rules:\n  - id: r\n    decision: deny\n    match: {steps: {min: 5, max: 2}}\n",
            r"plan_rules\[0\] \(id 'r'\): match\.steps: min \(5\) is above max \(2\)",
        ),
        (
            "plan_rules:\n  - id: r\n    decision: auto_approve\n    budget: {cost_usd: -1}\n",
            r"plan_rules\[0\] \(id 'r'\): budget\.cost_usd: Input should be greater than or equal to 0",
        ),
        (
            "call_rules:\n  - id: c\n    decision: require_call_approval\n"
            "    expire_after: 1h\n    on_expiry: approve\n",
            r"call_rules\[0\] \(id 'c'\): on_expiry: Input should be 'reject' or 'cancel'",
        ),
        (
            "call_rules:\n  - id: c\n    decision: deny\n    match: {arguments: {p: {glob: a, regex: b}}}\n",
            r"call_rules\[0\] \(id 'c'\): match\.arguments\.p: give exactly one of equals, glob, regex, in",
        ),
        (
            "call_rules:\n  - id: c\n    decision: deny\n    match: {arguments: {p: {regex: '('}}}\n",
            r"call_rules\[0\] \(id 'c'\): match\.arguments\.p\.regex: not a valid regular expression",
        ),
        (
            "call_rules:\n  - id: c\n    decision: allow\n  - id: c\n    decision: deny\n",
            r"call_rules\[1\]: id 'c' is already used by call_rules\[0\]",
        ),
        (
            "plan_rules:\n  - id: r\n    decision: deny\n    match: {any_tool: {name: []}}\n",
            r"plan_rules\[0\] \(id 'r'\): match\.any_tool\.name: List should have at least 1 item",
        ),
        (
            "call_rules:\n  - id: c\n    decision: require_call_approval\n    roles: []\n",
            r"call_rules\[0\] \(id 'c'\): roles: List should have at least 1 item",
        ),
        ("plan_rule: []\n", r"plan_rule: Extra inputs are not permitted"),
        ("- just a list\n", r"the top level must be a mapping"),
        ("plan_rules: [\n", r"not valid YAML"),
    ],
)
def test_a_bad_file_is_refused_naming_file_rule_and_key(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(PolicyError, match=re.escape(str(path)) + r".*" + expected):
        load_policy(path)


def test_a_policy_error_is_a_config_error_and_a_missing_file_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=re.escape(f"{missing}: cannot read policy file")):
        load_policy(missing)


@pytest.mark.parametrize(
    ("written", "seconds"),
    [("90s", 90), ("30m", 1800), ("2h", 7200), ("1.5d", 129600), ("600", 600), ("PT1H", 3600), ("01:00:00", 3600)],
)
def test_durations_are_read_in_the_usual_spellings(tmp_path: Path, written: str, seconds: float) -> None:
    text = f"plan_rules:\n  - id: r\n    decision: require_approval\n    expire_after: '{written}'\n"
    rule = load_policy(write(tmp_path, text)).plan_rules[0]
    assert isinstance(rule, RequireApprovalRule)
    assert rule.expire_after == timedelta(seconds=seconds)


def test_a_zero_or_negative_expiry_is_refused(tmp_path: Path) -> None:
    for value in ("0", "-5"):
        text = f"plan_rules:\n  - id: r\n    decision: require_approval\n    expire_after: {value}\n"
        with pytest.raises(PolicyError, match=r"expire_after must be positive"):
            load_policy(write(tmp_path, text))


def test_an_empty_file_is_the_empty_policy(tmp_path: Path) -> None:
    assert load_policy(write(tmp_path, "")) == DEFAULT_POLICY


def test_reload_swaps_in_a_good_file_and_keeps_the_old_policy_on_a_bad_one(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    holder = PolicyHolder(path)
    first = holder.policy
    assert [r.id for r in first.plan_rules] == ["read-only", "four-eyes"]
    path.write_text("plan_rules:\n  - id: only\n    decision: deny\n", encoding="utf-8")
    assert [r.id for r in holder.reload().plan_rules] == ["only"]
    second = holder.policy
    path.write_text("plan_rules:\n  - id: broken\n    decision: nope\n", encoding="utf-8")
    with pytest.raises(PolicyError, match=r"plan_rules\[0\] \(id 'broken'\): decision"):
        holder.reload()
    assert holder.policy is second


def test_without_a_path_the_holder_has_the_built_in_policy() -> None:
    holder = PolicyHolder(None)
    assert holder.policy is DEFAULT_POLICY
    assert holder.reload() is DEFAULT_POLICY


def test_a_bad_policy_file_is_refused_when_the_holder_is_built(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="decision"):
        PolicyHolder(write(tmp_path, "call_rules:\n  - id: c\n    decision: permit\n"))


def test_the_settings_sections_load_and_a_relative_policy_path_follows_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "policy: {path: policy.yaml}\n"
        "budgets: {input_tokens: 100000, cost_usd: 2.5, wall_seconds: 600}\n"
        "pricing:\n  models:\n    my-model: {input_usd_per_mtok: 1, output_usd_per_mtok: 2}\n",
        encoding="utf-8",
    )
    settings = load_settings(config)
    assert settings.policy.path == tmp_path / "policy.yaml"
    assert settings.budgets == Budget(input_tokens=100_000, cost_usd=2.5, wall_seconds=600)
    assert settings.pricing.models["my-model"].output_usd_per_mtok == 2
    assert settings.budgets.merged(Budget(cost_usd=10, tool_calls=5)) == Budget(
        input_tokens=100_000, cost_usd=10, wall_seconds=600, tool_calls=5
    )


def test_a_typo_in_the_new_settings_sections_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("budgets: {cost: 2}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"budgets\.cost: Extra inputs are not permitted"):
        load_settings(config)


def test_by_default_there_is_no_policy_file_and_no_budget_limit() -> None:
    settings = load_settings()
    assert settings.policy.path is None
    assert settings.budgets == Budget()
