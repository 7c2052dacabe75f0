"""Typed events: one record per event type, stored exactly as the hand-built payloads were, and the
README's event catalogue lists exactly the records' types and payload fields."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

import pydantic
import pytest

from agent_runtime.domain.events import (
    ApprovalExpired,
    ApprovalRecorded,
    ApprovalRequired,
    ApprovalsDiscarded,
    AttentionResolved,
    BudgetExceeded,
    BudgetRaised,
    CallApprovalRequired,
    CallDecided,
    ErrorBody,
    EventType,
    ExecutionStarted,
    LLMUsage,
    NeedsAttention,
    PlanEdited,
    PlanInvalid,
    PlanningStarted,
    PlanProposed,
    ReplanRequested,
    RevisionRequested,
    StepCompleted,
    StepFailed,
    StepRetrying,
    StepSkipped,
    StepStarted,
    TaskApproved,
    TaskCancelled,
    TaskCompleted,
    TaskCreated,
    TaskEvent,
    TaskFailed,
    TaskRejected,
    TaskResumed,
    TaskRetried,
    TextDelta,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallInDoubt,
    ToolCallRefused,
    ToolCallStarted,
    ToolProgress,
    VerificationCompleted,
    parse_event,
)
from agent_runtime.domain.plan import Plan, PlanStep
from agent_runtime.domain.states import TaskStatus

README = Path(__file__).resolve().parents[2] / "README.md"

PLAN = Plan(
    summary="Add, then echo.",
    steps=[
        PlanStep(id="s1", title="Add", instruction="Add 2 and 3.", tools=["example.add"], depends_on=[]),
        PlanStep(id="s2", title="Echo", instruction="Echo done.", tools=["example.echo"], depends_on=["s1"]),
    ],
)

# Each record next to the payload the emitters built by hand before the records existed (same
# values, same key order): the stored and streamed JSON must not change by a byte.
CASES: list[tuple[TaskEvent, dict[str, Any]]] = [
    (TaskCreated(status=TaskStatus.QUEUED), {"status": TaskStatus.QUEUED.value}),
    (PlanningStarted(revision=True), {"revision": True}),
    (PlanInvalid(problems=["no steps", "unknown tool x.y"]), {"problems": ["no steps", "unknown tool x.y"]}),
    (
        PlanProposed(
            plan_version=2,
            content_hash=PLAN.content_hash(),
            author="planner:offline/offline-test",
            offline_test=True,
            attempts=2,
            plan=PLAN,
            profile="default",
            profile_hash="sha256:" + "0" * 64,
        ),
        {
            "plan_version": 2,
            "content_hash": PLAN.content_hash(),
            "author": "planner:offline/offline-test",
            "offline_test": True,
            "attempts": 2,
            "plan": PLAN.model_dump(mode="json"),
            "estimate": None,  # added with approval policies: None when no policy estimated it
            "profile": "default",  # added with agent profiles: the profile the task snapshotted at submit
            "profile_hash": "sha256:" + "0" * 64,
        },
    ),
    (
        ApprovalRequired(plan_version=3),
        {"plan_version": 3, "rule": None, "roles": [], "required": 1, "expires_at": None, "on_expiry": None,
         "passed_over": []},  # fmt: skip
    ),
    (
        PlanEdited(plan_version=3, based_on=2, content_hash="sha256:ab", actor=None),
        {"plan_version": 3, "based_on": 2, "content_hash": "sha256:ab", "actor": None, "estimate": None},
    ),
    (
        RevisionRequested(plan_version=1, feedback="fewer steps", actor="ana"),
        {"plan_version": 1, "feedback": "fewer steps", "actor": "ana"},
    ),
    (
        TaskApproved(plan_version=1, actor="ana", content_hash="sha256:ab", approvers=["ana"]),
        {"plan_version": 1, "actor": "ana", "content_hash": "sha256:ab", "approvers": ["ana"]},
    ),
    (
        ApprovalRecorded(plan_version=1, actor="ana", content_hash="sha256:ab", approvals=1, required=2),
        {"plan_version": 1, "actor": "ana", "content_hash": "sha256:ab", "approvals": 1, "required": 2},
    ),
    (ApprovalsDiscarded(plan_version=1, approvers=["ana"]), {"plan_version": 1, "approvers": ["ana"]}),
    (
        TaskRejected(plan_version=1, reason=None, actor=None),
        {"plan_version": 1, "reason": None, "actor": None},
    ),
    (
        ExecutionStarted(plan_version=1, content_hash="sha256:cd"),
        {"plan_version": 1, "content_hash": "sha256:cd"},
    ),
    (TaskResumed(phase="executing", worker="host-1:42"), {"phase": "executing", "worker": "host-1:42"}),
    (StepStarted(step_id="s1", resumed=False), {"step_id": "s1", "resumed": False}),
    (TextDelta(step_id="s1", text="Five.\n\u2603"), {"step_id": "s1", "text": "Five.\n\u2603"}),
    (
        ToolCallStarted(
            call_id="call_1", step_id="s1", tool="example.add", arguments={"a": 2, "b": [3.5, None]}, retry=True
        ),
        {
            "call_id": "call_1",
            "step_id": "s1",
            "tool": "example.add",
            "arguments": {"a": 2, "b": [3.5, None]},
            "retry": True,
        },
    ),
    (
        ToolProgress(call_id="call_1", step_id="s1", progress=0.5, total=None, message=None),
        {"call_id": "call_1", "step_id": "s1", "progress": 0.5, "total": None, "message": None},
    ),
    (
        ToolCallCompleted(
            call_id="call_1",
            step_id="s1",
            tool="example.add",
            is_error=False,
            result="5",
            truncated=False,
            duration_ms=1.234,
        ),
        {
            "call_id": "call_1",
            "step_id": "s1",
            "tool": "example.add",
            "is_error": False,
            "result": "5",
            "truncated": False,
            "duration_ms": 1.234,
        },
    ),
    (
        ToolCallFailed(call_id="call_1", step_id="s1", tool="example.add", code="tool_timeout", error="timed out"),
        {"call_id": "call_1", "step_id": "s1", "tool": "example.add", "code": "tool_timeout", "error": "timed out"},
    ),
    (
        ToolCallRefused(call_id="call_2", step_id="s1", tool="example.rm", reason="not listed"),
        {"call_id": "call_2", "step_id": "s1", "tool": "example.rm", "reason": "not listed"},
    ),
    (
        ToolCallInDoubt(call_id="call_1", step_id="s1", tool="example.wait", safe_to_repeat=False),
        {"call_id": "call_1", "step_id": "s1", "tool": "example.wait", "safe_to_repeat": False},
    ),
    (
        NeedsAttention(tool_call_id="call_1", tool="example.wait", step_id="s1", reason="in flight"),
        {"tool_call_id": "call_1", "tool": "example.wait", "step_id": "s1", "reason": "in flight"},
    ),
    (
        AttentionResolved(tool_call_id="call_1", action="skip", actor=None),
        {"tool_call_id": "call_1", "action": "skip", "actor": None},
    ),
    (
        TaskRetried(plan_version=1, steps=["s2", "s3"], actor="ana"),
        {"plan_version": 1, "steps": ["s2", "s3"], "actor": "ana"},
    ),
    (StepCompleted(step_id="s1", output="5"), {"step_id": "s1", "output": "5"}),
    (
        StepFailed(step_id="s1", error=ErrorBody(code="step_limit_exceeded", message="out of turns")),
        {"step_id": "s1", "error": {"code": "step_limit_exceeded", "message": "out of turns"}},
    ),
    (TaskCompleted(summary="done"), {"summary": "done"}),
    (
        TaskFailed(error=ErrorBody(code="llm_error", message="429", details={"attempts": 3})),
        {"error": {"code": "llm_error", "message": "429", "details": {"attempts": 3}}},
    ),
    (
        TaskFailed(error=ErrorBody(code="in_doubt_failed", message="operator failed it")),
        {"error": {"code": "in_doubt_failed", "message": "operator failed it"}},
    ),
    (
        TaskCancelled(reason=None, previous_status=TaskStatus.EXECUTING),
        {"reason": None, "previous_status": TaskStatus.EXECUTING.value, "actor": None},
    ),
    # Approval policies: payloads as the README's event catalogue describes them.
    (
        CallApprovalRequired(
            call_id="call_3", step_id="s1", tool="example.write_note", arguments={"name": "n"}, rule="gate",
            roles=["admin"], expires_at=datetime(2026, 12, 5, 14, 0, tzinfo=UTC), on_expiry="reject",
        ),
        {"call_id": "call_3", "step_id": "s1", "tool": "example.write_note", "arguments": {"name": "n"},
         "rule": "gate", "roles": ["admin"], "expires_at": "2026-12-05T14:00:00Z", "on_expiry": "reject"},
    ),
    (
        CallDecided(call_id="call_3", decision="edit", actor="ana", reason=None, tool="example.echo",
                    arguments={"text": "x"}),
        {"call_id": "call_3", "decision": "edit", "actor": "ana", "reason": None, "tool": "example.echo",
         "arguments": {"text": "x"}},
    ),
    (
        ApprovalExpired(kind="plan", rule="hurry", action="reject", plan_version=1),
        {"kind": "plan", "rule": "hurry", "action": "reject", "plan_version": 1, "call_id": None},
    ),
    (
        LLMUsage(role="executor", model="gpt-4.1", input_tokens=10, output_tokens=2, cost_usd=None, step_id="s1"),
        {"role": "executor", "model": "gpt-4.1", "input_tokens": 10, "output_tokens": 2, "cost_usd": None,
         "step_id": "s1"},
    ),
    (
        BudgetExceeded(limit="tool_calls", spent={"tool_calls": 2.0}, budget={"tool_calls": 2.0}),
        {"limit": "tool_calls", "spent": {"tool_calls": 2.0}, "budget": {"tool_calls": 2.0}},
    ),
    (BudgetRaised(actor="ana", budget={"tool_calls": 5.0}), {"actor": "ana", "budget": {"tool_calls": 5.0}}),
    (
        StepRetrying(step_id="s1", attempt=1, attempts=3, error=ErrorBody(code="step_limit_exceeded", message="m"),
                     retry_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        {"step_id": "s1", "attempt": 1, "attempts": 3, "error": {"code": "step_limit_exceeded", "message": "m"},
         "retry_at": "2026-01-02T03:04:05Z"},
    ),
    (
        StepSkipped(step_id="s1", error=ErrorBody(code="llm_error", message="m"), attempts=2),
        {"step_id": "s1", "error": {"code": "llm_error", "message": "m"}, "attempts": 2},
    ),
    (
        ReplanRequested(step_id="s2", error=ErrorBody(code="step_limit_exceeded", message="m"), attempts=1,
                        replan=1, max_replans=2),
        {"step_id": "s2", "error": {"code": "step_limit_exceeded", "message": "m"}, "attempts": 1, "replan": 1,
         "max_replans": 2},
    ),
    (VerificationCompleted(met=False, reason="no total"), {"met": False, "reason": "no total"}),
]  # fmt: skip


def _records() -> list[type[pydantic.BaseModel]]:
    union = get_args(TaskEvent)[0]
    return list(get_args(union))


def _type_of(record: type[pydantic.BaseModel]) -> str:
    (literal,) = get_args(record.model_fields["type"].annotation)
    assert isinstance(literal, str)
    return literal


def _payload_fields(record: type[pydantic.BaseModel]) -> list[str]:
    return [name for name in record.model_fields if name != "type"]


def test_the_union_has_one_record_per_event_type_and_no_other() -> None:
    types = [_type_of(record) for record in _records()]
    assert sorted(types) == sorted(str(t) for t in EventType)
    assert len(types) == len(set(types))


def test_every_event_type_is_stored_exactly_as_its_hand_built_payload_was() -> None:
    assert {event.type for event, _ in CASES} == {str(t) for t in EventType}
    for event, legacy in CASES:
        assert json.dumps(event.payload()) == json.dumps(legacy), event.type


def test_every_stored_payload_round_trips_through_the_union() -> None:
    for event, legacy in CASES:
        parsed = parse_event(event.type, legacy)
        assert parsed == event
        assert type(parsed) is type(event)
        assert json.dumps(parsed.payload()) == json.dumps(legacy), event.type


def test_a_payload_with_a_missing_or_unknown_field_is_not_an_event() -> None:
    with pytest.raises(pydantic.ValidationError, match="plan_version"):
        parse_event("task_approved", {"actor": "ana"})
    with pytest.raises(pydantic.ValidationError, match="extra"):
        parse_event("task_completed", {"summary": "done", "result": {}})
    with pytest.raises(pydantic.ValidationError, match="does not match any of the expected tags"):
        parse_event("task_exploded", {})


def _readme_catalogue() -> dict[str, list[str]]:
    """``type`` -> payload fields, from the README's event table (first column and last column:
    the backticked names outside parentheses)."""
    section = README.read_text().split("\n## Events\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    catalogue: dict[str, list[str]] = {}
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        (name,) = re.findall(r"`([a-z_]+)`", cells[0])
        data = re.sub(r"\([^)]*\)", "", cells[-1])
        catalogue[name] = re.findall(r"`([a-z_]+)`", data)
    return catalogue


def test_the_readme_event_catalogue_lists_every_event_type_with_its_payload_fields() -> None:
    documented = _readme_catalogue()
    typed = {_type_of(record): _payload_fields(record) for record in _records()}
    assert sorted(documented) == sorted(typed), "event types missing from the README, or documented but absent"
    for name, fields in typed.items():
        assert documented[name] == fields, f"README row for {name}: documented {documented[name]}, stored {fields}"
