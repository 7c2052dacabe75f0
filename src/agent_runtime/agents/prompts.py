"""Prompt texts. Kept apart so they can be reviewed (and versioned) on their own."""

from __future__ import annotations

import json

from agent_runtime.domain.plan import Plan, PlanStep
from agent_runtime.llm.base import ToolSpec

PLANNER_SYSTEM = """\
You are the planner of a task service. Turn the user's request into a short plan of steps that an
executor will carry out with tools, after a human approves the plan.
Rules:
- Each step has a unique short id (s1, s2, ...), a title, a self-contained instruction, the exact names
  of the tools it may call (only names from the tool catalogue; an empty list if it needs none), and the
  ids of steps it depends on.
- Use as few steps as the request needs; at most {max_steps}.
- Never invent tools. A step can only do what its listed tools allow.
- Steps that do not depend on each other may run at the same time: list a dependency only when a step
  needs another's result.
- Optional: on_failure (for the plan, or for a step) says what happens when a step fails: retry it
  (attempts, backoff_seconds), skip it, or replan the remaining steps; leave it out to fail the task.
  Set verify to true when the request's success should be checked against the step results.
"""

EXECUTOR_SYSTEM = """\
You are the executor of one step of an approved plan. Do what the step's instruction says, using only
the tools you are given. Tool results may be errors: read them and adapt. When the step is done,
answer with a short plain-text result of the step (no tool call).
"""

SUMMARY_SYSTEM = """\
You write the final result of a task from the results of its steps: a short, factual summary for the
person who asked. Do not call tools.
"""


def catalogue_text(tools: list[ToolSpec]) -> str:
    if not tools:
        return "(no tools are available)"
    return "\n".join(
        f"- {t.name}: {t.description.strip() or '(no description)'}\n  input schema: "
        f"{json.dumps(t.input_schema, separators=(',', ':'))}"
        for t in tools
    )


def planner_system(custom: str | None, max_steps: int) -> str:
    """A profile's planner prompt (``{max_steps}`` replaced), else the built-in one."""
    if custom is None:
        return PLANNER_SYSTEM.format(max_steps=max_steps)
    return custom.replace("{max_steps}", str(max_steps))


SESSION_HEADER = "Earlier tasks in this session (oldest first)"


def session_part(history: str | None) -> list[str]:
    """The session's summary as a prompt paragraph (nothing without one)."""
    return [f"{SESSION_HEADER}:\n{history}"] if history else []


def planner_request(
    prompt: str, tools: list[ToolSpec], feedback: str | None, previous: Plan | None, history: str | None = None
) -> str:
    parts = [*session_part(history), f"Request:\n{prompt}", f"Tool catalogue:\n{catalogue_text(tools)}"]
    if previous is not None and feedback:
        parts.append(f"The previous plan was:\n{previous.model_dump_json(indent=1)}")
        parts.append(f"The operator asked for a revision:\n{feedback}")
    return "\n\n".join(parts)


def repair_request(problems: list[str]) -> str:
    listed = "\n".join(f"- {p}" for p in problems)
    return f"That plan is invalid:\n{listed}\nProduce a corrected plan."


def step_request(
    prompt: str, plan: Plan, step: PlanStep, dependency_outputs: dict[str, str], history: str | None = None
) -> str:
    parts = [
        *session_part(history),
        f"Task request:\n{prompt}",
        f"Plan summary: {plan.summary}",
        f"Your step ({step.id}: {step.title}):\n{step.instruction}",
    ]
    for dep, output in dependency_outputs.items():
        parts.append(f"Result of step {dep}:\n{output}")
    return "\n\n".join(parts)


def summary_request(prompt: str, outputs: dict[str, str]) -> str:
    lines = [f"Task request:\n{prompt}", "Step results:"]
    lines += [f"- {sid}: {out}" for sid, out in outputs.items()]
    return "\n".join(lines)


VERIFY_SYSTEM = """\
You check the work of a task service. Given the request and the results of the plan's steps, judge
whether the request was met. Answer met=true only if the results show it was; give a one-sentence
reason naming what is missing when it was not.
"""


def verification_request(prompt: str, outputs: dict[str, str]) -> str:
    results = "\n".join(f"- {sid}: {out}" for sid, out in outputs.items()) or "(no step results)"
    return f"Request:\n{prompt}\n\nStep results:\n{results}\n\nWas the request met?"


def replan_request(
    prompt: str,
    tools: list[ToolSpec],
    completed: dict[str, tuple[PlanStep, str]],
    failed: dict[str, str],
    remaining: list[PlanStep],
    id_prefix: str,
    feedback: str | None,
) -> str:
    """A replan: the planner writes only the steps still to do (the completed ones are kept)."""
    done = "\n".join(f"- {s.id} ({s.title}): {out}" for s, out in completed.values()) or "(none)"
    parts = [
        f"Request:\n{prompt}",
        f"Tool catalogue:\n{catalogue_text(tools)}",
        f"Completed steps (kept as they are; new steps may depend on their ids):\n{done}",
        "Failed steps:\n" + "\n".join(f"- {sid}: {error}" for sid, error in failed.items()),
        "Steps not yet done:\n" + "\n".join(s.instruction for s in remaining),
        f"New step ids start with:\n{id_prefix}",
        "Write a plan of only the steps still needed to meet the request, working around the failure. "
        "Do not repeat the completed steps.",
    ]
    if feedback:
        parts.append(f"The operator asked for a revision:\n{feedback}")
    return "\n\n".join(parts)
