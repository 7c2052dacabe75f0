"""Atlantis-style re-approval scope: may a new plan version keep an earlier version's approval?

Only when it does no more than the approved version did. Every step of the new version must be
*covered* by the approved step with the same id:

* the same instruction (surrounding whitespace aside): the instruction is what the executor does,
  so a reworded instruction is new scope even with the same tools;
* its tools a subset of that step's tools;
* its ``depends_on`` keeping every dependency the approved step had on a step that is still there
  (dropping one could let the step run earlier than approved).

Titles, the summary, dropped steps and added dependencies do not matter. A new step id or a new
tool on a step means a new decision.
"""

from __future__ import annotations

from agent_runtime.domain.plan import Plan


def is_scope_subset(new_plan: Plan, approved_plan: Plan) -> bool:
    """True when ``new_plan`` stays within ``approved_plan``'s scope (see the module docstring)."""
    approved = {step.id: step for step in approved_plan.steps}
    if len(approved) != len(approved_plan.steps):
        return False  # duplicate ids: no step can be told apart, keep nothing
    kept = {step.id for step in new_plan.steps}
    if len(kept) != len(new_plan.steps):
        return False
    for step in new_plan.steps:
        before = approved.get(step.id)
        if before is None:
            return False
        if step.instruction.strip() != before.instruction.strip():
            return False
        if not set(step.tools) <= set(before.tools):
            return False
        if not {dep for dep in before.depends_on if dep in kept} <= set(step.depends_on):
            return False
    return True
