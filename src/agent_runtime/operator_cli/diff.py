"""Differences between two plan versions: a unified diff of their YAML, and which steps changed."""

from __future__ import annotations

import difflib
from typing import Any

import yaml

from agent_runtime.domain.plan import Plan
from agent_runtime.schemas import PlanVersionOut


def plan_yaml(plan: Plan) -> str:
    """The plan as YAML, keys in the schema's order (what ``diff`` compares and ``edit`` opens)."""
    text: str = yaml.safe_dump(plan.model_dump(mode="json"), sort_keys=False, allow_unicode=True, width=100)
    return text


def unified(old: PlanVersionOut, new: PlanVersionOut) -> list[str]:
    return list(
        difflib.unified_diff(
            plan_yaml(old.plan).splitlines(),
            plan_yaml(new.plan).splitlines(),
            fromfile=f"v{old.version} ({old.author})",
            tofile=f"v{new.version} ({new.author})",
            lineterm="",
        )
    )


def step_changes(old: Plan, new: Plan) -> dict[str, Any]:
    """Step ids added, removed and changed (same id, other content), and whether the order or the
    summary changed."""
    before = {s.id: s for s in old.steps}
    after = {s.id: s for s in new.steps}
    kept = [i for i in after if i in before]
    return {
        "summary_changed": old.summary != new.summary,
        "added": [i for i in after if i not in before],
        "removed": [i for i in before if i not in after],
        "changed": [i for i in kept if before[i] != after[i]],
        "reordered": [i for i in before if i in after] != kept,
    }
