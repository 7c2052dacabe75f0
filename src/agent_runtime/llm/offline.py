"""The offline test model: a deterministic :class:`LLMClient` that needs no network and no key.

The no-key default for demos, frontend work and tests. It labels what it writes ``[offline-test]``
and is not a language model: it follows simple, documented rules.

* ``generate_structured`` fills the requested pydantic schema from its JSON schema. If the schema
  looks like a plan (an array field whose items carry a ``tools`` list of strings) and
  ``tools_hint`` is given, it makes one step per sentence of the request (at most ``max_steps``),
  each naming the hinted tool(s) sharing the most words with it (else the first hinted tool). A
  sentence that refers back ("the same", "again", "as before", "likewise") also counts the words
  of the last earlier request of the session (the "Earlier tasks in this session" section), so a
  follow-up such as "Do the same for 3 and 4" gets the tool the earlier task was planned with.
  "retry on failure" / "skip on failure" / "replan on failure" in the request set the plan's
  ``on_failure`` (retry: 3 attempts, 0.2 s backoff), "verify" sets ``verify``. A replan request
  (a "Steps not yet done:" section) gets one step per line of that section, each with only its one
  best tool, with ids starting as the "New step ids start with:" section says.
* A verification (a schema with a boolean ``met``) is met unless the "Step results:" section is
  empty or a result was skipped or reported an error.
* ``generate`` calls every offered tool (at most ``max_tool_calls``) with arguments built from its
  input schema until results for offered tools are in the conversation, then streams a summary.

Prompts made of ``Header:`` paragraphs (as ``agents/prompts.py`` writes them) are read by section:
the request (plus any revision feedback) for plans, the step's instruction for tool arguments.
Same input, same output: no randomness, no clock.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

import pydantic

from agent_runtime.errors import LLMError
from agent_runtime.llm import base
from agent_runtime.llm.base import LLMResponse, Message, ModelT, ToolCallRequest, ToolSpec, Usage
from agent_runtime.llm.schema_filler import (
    DEPENDS_KEYS,
    ID_KEYS,
    INSTRUCTION_KEYS,
    OFFLINE_MARK,
    TITLE_KEYS,
    SchemaFiller,
    clip,
    make_title,
    words_of,
)

__all__ = ["OFFLINE_MARK", "OfflineTestModel"]

_HEADER = re.compile(r"(?:\A|\n[ \t]*\n)[ \t]*([^\n]{1,80}):[ \t]*\n")  # "Header:" opening a paragraph
_REFERS_BACK = re.compile(r"\b(?:the same|again|as before|likewise)\b", re.IGNORECASE)
_EARLIER_REQUEST = re.compile(r"request: (.*?)(?: \| plan: | \| result: |$)", re.MULTILINE)


class OfflineTestModel(base.LLMClient):
    """Rule-based stand-in for a model; see the module docstring for the rules."""

    provider = "offline"

    def __init__(self, model: str = "offline-test", *, max_steps: int = 5, max_tool_calls: int = 3) -> None:
        self.model = model
        self.max_steps = max_steps
        self.max_tool_calls = max_tool_calls

    async def generate_structured(
        self,
        *,
        system: str,
        messages: list[Message],
        schema: type[ModelT],
        tools_hint: list[ToolSpec] | None = None,
    ) -> tuple[ModelT, Usage]:
        # The first user turn holds the request (and any revision feedback); later ones are repair
        # requests, which this model cannot act on differently anyway.
        first = next((m.content for m in messages if m.role == "user"), "")
        request = focus(first, "request", "task", "prompt")
        remaining = focus(first, "not yet done", fallback=False)  # a replan: plan what is left
        text = (remaining or request) + "\n" + focus(first, "revision", fallback=False)
        root = schema.model_json_schema()
        filler = SchemaFiller(root, text=text, all_fields=True)
        hint = tools_hint or []
        steps_key = find_plan_steps(root, filler) if hint else None
        if steps_key:
            prefix = (focus(first, "new step ids", fallback=False).strip().splitlines() or [""])[0].strip()
            earlier = _EARLIER_REQUEST.findall(focus(first, "earlier tasks", fallback=False))
            data = self._plan(
                filler, steps_key, hint, earlier[-1] if earlier else "", prefix=prefix, one_tool=bool(remaining)
            )
            data.update(plan_options(request, root.get("properties", {})))
        elif _is_verdict(root):
            data = _verdict(focus(first, "step results", fallback=False))
        else:
            data = filler.fill(root)
        try:
            value = schema.model_validate(data)
        except pydantic.ValidationError as exc:
            problem = f"could not build a valid {schema.__name__}: {exc.error_count()} validation error(s)"
            raise LLMError(f"offline test model {problem}", provider=self.provider) from exc
        return value, _usage(system, messages, json.dumps(data))

    async def generate(
        self,
        *,
        system: str,
        messages: list[Message],
        tools: list[ToolSpec],
        on_text_delta: base.TextDeltaHandler | None = None,
    ) -> LLMResponse:
        offered = {t.name for t in tools}
        call_names = {c.id: c.name for m in messages for c in m.tool_calls}
        named = [(m, m.tool_name or call_names.get(m.tool_call_id or "")) for m in messages if m.role == "tool"]
        results = [m for m, name in named if name in offered]
        last = next((m.content for m in reversed(messages) if m.role == "user" and m.content), "")
        text = focus(last, "your step", "step", "request", "task")
        if tools and not results:
            calls = tuple(
                ToolCallRequest(
                    id="offline_" + hashlib.sha256(f"{len(messages)}:{i}:{t.name}".encode()).hexdigest()[:16],
                    name=t.name,
                    arguments=SchemaFiller(t.input_schema, text=text, all_fields=False, context=last).fill(
                        t.input_schema
                    ),
                )
                for i, t in enumerate(tools[: self.max_tool_calls])
            )
            usage = _usage(system, messages, json.dumps([c.arguments for c in calls]))
            return LLMResponse(text="", tool_calls=calls, usage=usage, stop_reason="tool_use")
        final = _summary(results, call_names, text)
        if on_text_delta is not None:
            size = max(1, math.ceil(len(final) / 4))
            for start in range(0, len(final), size):
                await on_text_delta(final[start : start + size])
        return LLMResponse(text=final, usage=_usage(system, messages, final), stop_reason="end_turn")

    def _plan(
        self,
        filler: SchemaFiller,
        steps_key: str,
        tools: list[ToolSpec],
        earlier: str,
        *,
        prefix: str = "",
        one_tool: bool = False,
    ) -> dict[str, Any]:
        steps_schema = filler.resolve(filler.resolve(filler.root)["properties"][steps_key])
        parts = split_steps(filler.text)[: self.max_steps] or [("Complete the request", False)]
        parts += [(parts[-1][0], True)] * (int(steps_schema.get("minItems", 1)) - len(parts))
        parts = parts[: int(steps_schema.get("maxItems", len(parts)))]
        item = filler.resolve(steps_schema.get("items"))
        data: dict[str, Any] = filler.fill(filler.root, skip=frozenset({steps_key}))
        data[steps_key] = [
            self._step(
                filler,
                item,
                i,
                sentence,
                pick_tools(_referred(sentence, earlier), tools, 1 if one_tool else 2),
                follows,
                prefix,
            )
            for i, (sentence, follows) in enumerate(parts)
        ]
        return data

    @staticmethod
    def _step(
        filler: SchemaFiller,
        item: dict[str, Any],
        index: int,
        sentence: str,
        tools: list[str],
        follows: bool,
        prefix: str = "",
    ) -> Any:
        props: dict[str, Any] = item.get("properties", {})
        instruction_key = next((k for k in INSTRUCTION_KEYS for p in props if p.lower() == k), None)
        step_filler = SchemaFiller(filler.root, text=sentence, all_fields=True)
        id_key = next((k for k in props if k.lower() in ID_KEYS), None)
        kind_of_ids = filler.resolve(props[id_key]).get("type") if id_key else None
        step: dict[str, Any] = {}
        for key, prop in props.items():
            lowered, kind = key.lower(), filler.resolve(prop).get("type")
            preferred: Any = None
            if key == "tools":
                preferred = tools[: int(filler.resolve(prop).get("maxItems", len(tools)))]
            elif lowered == instruction_key:
                preferred = sentence
            elif lowered in DEPENDS_KEYS:  # "…, then …": after the step before; else independent
                preferred = [index if kind_of_ids == "integer" else f"{prefix}step-{index}"] if follows else []
            elif lowered in TITLE_KEYS:
                preferred = make_title(sentence)
            elif lowered in ID_KEYS:
                preferred = index + 1 if kind == "integer" else f"{prefix}step-{index + 1}"
            step[key] = step_filler.fill(prop, key, required=key in item.get("required", ()), preferred=preferred)
        return step


_ON_FAILURE = re.compile(r"\b(retry|skip|replan)\b[^.;\n]{0,40}?\bon (?:failure|error)\b", re.IGNORECASE)
_VERIFY = re.compile(r"\bverify\b", re.IGNORECASE)


def plan_options(request: str, props: dict[str, Any]) -> dict[str, Any]:
    """``on_failure`` and ``verify`` from the request's words, where the plan schema has them:
    "retry on failure" (3 attempts, 0.2 s backoff), "skip on failure", "replan on failure"; "verify"."""
    options: dict[str, Any] = {}
    found = _ON_FAILURE.search(request)
    if found and "on_failure" in props:
        action = found.group(1).lower()
        options["on_failure"] = {
            "action": action,
            **({"attempts": 3, "backoff_seconds": 0.2} if action == "retry" else {}),
        }
    if _VERIFY.search(request) and "verify" in props:
        options["verify"] = True
    return options


def _is_verdict(root: dict[str, Any]) -> bool:
    props = root.get("properties", {})
    return isinstance(props.get("met"), dict) and props["met"].get("type") == "boolean"


def _verdict(results: str) -> dict[str, Any]:
    """A verification: met unless there are no step results or one was skipped or reported an error."""
    lines = [line for line in results.splitlines() if line.strip()]
    missing = [line for line in lines if "was skipped" in line or "reported an error" in line]
    met = bool(lines) and not missing
    reason = "every step produced a result" if met else clip("; ".join(missing) or "no step results", 300)
    return {"met": met, "reason": f"{OFFLINE_MARK} {reason}"}


def find_plan_steps(root: dict[str, Any], filler: SchemaFiller) -> str | None:
    """The top-level array field whose items have a ``tools`` list of strings, if any."""
    props: dict[str, Any] = filler.resolve(root).get("properties", {})
    for key in sorted(props, key=lambda k: k != "steps"):
        options = [filler.resolve(v) for v in filler.resolve(props[key]).get("anyOf", [props[key]])]
        field = next((o for o in options if o.get("type") == "array"), {})
        tools = filler.resolve(filler.resolve(field.get("items")).get("properties", {}).get("tools"))
        if tools.get("type") == "array" and filler.resolve(tools.get("items")).get("type") == "string":
            return key
    return None


def focus(text: str, *preferred: str, fallback: bool = True) -> str:
    """The bodies of the ``Header:`` sections whose header holds the first word of ``preferred``
    that any header holds; with none, all of ``text`` (or "" without ``fallback``)."""
    found = list(_HEADER.finditer(text))
    sections = [
        (m.group(1).lower(), text[m.end() : found[i + 1].start() if i + 1 < len(found) else len(text)])
        for i, m in enumerate(found)
    ]
    for word in preferred:
        bodies = [body.strip() for header, body in sections if word in header and body.strip()]
        if bodies:
            return "\n".join(bodies)
    return text.strip() if fallback else ""


def split_steps(text: str) -> list[tuple[str, bool]]:
    """Lines and sentences of ``text`` (without list bullets or numbering, skipping JSON), each with
    whether it follows on from the one before: a part after
    "…, then …" (or a sentence starting with "Then") depends on it; separate sentences do not, so
    a request with independent parts gives steps that may run side by side."""
    out: list[tuple[str, bool]] = []
    for raw in text.splitlines():
        line = re.sub(r"^\s*(?:[-*\u2022]|\d+[.)])\s+", "", raw).strip()
        if "{" in line:
            continue
        for sentence in re.split(r"(?<=[.!?;])\s+", line):
            parts = [p.strip() for p in re.split(r",?\s+(?:and\s+)?then\s+", sentence, flags=re.IGNORECASE)]
            for n, part in enumerate(p for p in parts if len(p) > 1):
                follows = n > 0 or part.lower().startswith("then ")
                out.append((part[:1].upper() + part[1:], follows and bool(out)))
    return out


def pick_tools(sentence: str, tools: list[ToolSpec], limit: int = 2) -> list[str]:
    """The hinted tools sharing the most words with ``sentence`` (name words count double)."""
    words = words_of(sentence)
    scores = [2 * len(words & words_of(t.name)) + len(words & words_of(t.description)) for t in tools]
    best = max(scores, default=0)
    if best == 0:
        return [tools[0].name]
    return [t.name for t, score in zip(tools, scores, strict=True) if score == best][:limit]


def _referred(sentence: str, earlier: str) -> str:
    """``sentence``, with the earlier request it refers back to (if it does and there is one)."""
    return f"{sentence} {earlier}" if earlier and _REFERS_BACK.search(sentence) else sentence


def _summary(results: list[Message], call_names: dict[str, str], request: str) -> str:
    if not results:
        return f"{OFFLINE_MARK} Done without tools. {clip(' '.join(request.split()), 300)}".rstrip()
    lines = [f"{OFFLINE_MARK} Finished after {len(results)} tool result(s)."]
    for result in results:
        name = result.tool_name or call_names.get(result.tool_call_id or "", "tool")
        verb = "reported an error" if result.is_error else "returned"
        lines.append(f"- {name} {verb}: {clip(' '.join(result.content.split()), 160) or '(empty)'}")
    return "\n".join(lines)


def _usage(system: str, messages: list[Message], output: str) -> Usage:
    consumed = len(system) + sum(len(m.content) for m in messages)
    return Usage(input_tokens=consumed // 4 + 1, output_tokens=len(output) // 4 + 1)
