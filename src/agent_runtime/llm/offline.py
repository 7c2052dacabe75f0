"""The offline test model: a deterministic :class:`LLMClient` that needs no network and no key.

It is the no-key default for demos, frontend work and tests, and labels everything it writes
with ``[offline-test]``. It is not a language model: it follows simple, documented rules.

* ``generate_structured`` fills the requested pydantic schema from its JSON schema. If the schema
  looks like a plan (an array field whose items carry a ``tools`` list of strings) and
  ``tools_hint`` is given, it splits the user's request into sentences (at most ``max_steps``),
  makes one step per sentence and picks the hinted tool(s) whose name and description share
  the most words with it (else the first hinted tool). Only hinted tools are ever named.
* ``generate`` calls every offered tool (at most ``max_tool_calls``) with arguments built from
  the tool's input schema until results for offered tools are in the conversation, then streams
  a final summary of those results.

Same input, same output: there is no randomness and no clock.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

import pydantic

from agent_runtime.errors import LLMError
from agent_runtime.llm.base import (
    LLMClient,
    LLMResponse,
    Message,
    ModelT,
    TextDeltaHandler,
    ToolCallRequest,
    ToolSpec,
    Usage,
)

OFFLINE_MARK = "[offline-test]"
FREE_TEXT_KEYS = frozenset(
    {
        "summary",
        "notes",
        "note",
        "rationale",
        "reasoning",
        "explanation",
        "comment",
        "comments",
        "remarks",
    }
)
INSTRUCTION_KEYS = (
    "instruction",
    "instructions",
    "prompt",
    "task",
    "goal",
    "details",
    "description",
)
TITLE_KEYS = frozenset({"title", "name", "label", "heading"})
ID_KEYS = frozenset({"id", "step_id", "key"})
TEXT_ARG_KEYS = frozenset(
    {
        "query",
        "q",
        "text",
        "content",
        "message",
        "prompt",
        "input",
        "search",
        "question",
        "instruction",
    }
)
FORMAT_VALUES = {
    "date-time": "2000-01-01T00:00:00Z",
    "date": "2000-01-01",
    "time": "00:00:00",
    "email": "offline-test@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "hostname": "localhost",
    "ipv4": "127.0.0.1",
}
_STOPWORDS = frozenset(
    re.findall(
        r"\w+",
        "the and for with from into that this then than them they what when where which while "
        "your you are was were will would can could should have has had not but all any its our "
        "out use using please also about after before each every some more most",
    )
)
_MAX_DEPTH = 8


class OfflineTestModel(LLMClient):
    """Rule-based stand-in for a model; see the module docstring for the rules."""

    provider = "offline"

    def __init__(
        self, model: str = "offline-test", *, max_steps: int = 5, max_tool_calls: int = 3
    ) -> None:
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
        text = last_user_text(messages)
        root = schema.model_json_schema()
        filler = SchemaFiller(root, text=text, all_fields=True)
        steps_key = find_plan_steps(root, filler) if tools_hint else None
        if steps_key is not None and tools_hint:
            data = self._plan(root, steps_key, filler, text, tools_hint)
        else:
            data = filler.fill(root)
        try:
            value = schema.model_validate(data)
        except pydantic.ValidationError as exc:
            raise LLMError(
                f"offline test model could not build a valid {schema.__name__}: "
                f"{exc.error_count()} validation error(s)",
                provider=self.provider,
            ) from exc
        return value, _usage(system, messages, json.dumps(data))

    async def generate(
        self,
        *,
        system: str,
        messages: list[Message],
        tools: list[ToolSpec],
        on_text_delta: TextDeltaHandler | None = None,
    ) -> LLMResponse:
        offered = {t.name for t in tools}
        call_names = {c.id: c.name for m in messages for c in m.tool_calls}
        results = [
            m
            for m in messages
            if m.role == "tool" and (m.tool_name or call_names.get(m.tool_call_id or "")) in offered
        ]
        if tools and not results:
            text = last_user_text(messages)
            calls = tuple(
                ToolCallRequest(
                    id=_call_id(len(messages), i, tool.name),
                    name=tool.name,
                    arguments=SchemaFiller(tool.input_schema, text=text, all_fields=False).fill(
                        tool.input_schema
                    ),
                )
                for i, tool in enumerate(tools[: self.max_tool_calls])
            )
            usage = _usage(system, messages, json.dumps([c.arguments for c in calls]))
            return LLMResponse(text="", tool_calls=calls, usage=usage, stop_reason="tool_use")
        final = _summary(results, call_names, last_user_text(messages))
        if on_text_delta is not None:
            for chunk in _chunks(final, parts=4):
                await on_text_delta(chunk)
        return LLMResponse(
            text=final, usage=_usage(system, messages, final), stop_reason="end_turn"
        )

    def _plan(
        self,
        root: dict[str, Any],
        steps_key: str,
        filler: SchemaFiller,
        text: str,
        tools: list[ToolSpec],
    ) -> dict[str, Any]:
        top = filler.resolve(root)
        steps_schema = filler.resolve(top["properties"][steps_key])
        item_schema = filler.resolve(steps_schema.get("items", {}))
        sentences = split_sentences(text)[: self.max_steps] or ["Complete the request"]
        low = int(steps_schema.get("minItems", 1))
        while len(sentences) < low:
            sentences.append(sentences[-1])
        if "maxItems" in steps_schema:
            sentences = sentences[: int(steps_schema["maxItems"])]
        data: dict[str, Any] = filler.fill(root, skip=frozenset({steps_key}))
        data[steps_key] = [
            self._step(filler, item_schema, i, sentence, pick_tools(sentence, tools))
            for i, sentence in enumerate(sentences)
        ]
        return data

    @staticmethod
    def _step(
        filler: SchemaFiller, item: dict[str, Any], index: int, sentence: str, tools: list[str]
    ) -> dict[str, Any]:
        props: dict[str, Any] = item.get("properties", {})
        required = set(item.get("required", ()))
        instruction_key = next((k for k in INSTRUCTION_KEYS for p in props if p.lower() == k), None)
        step_filler = SchemaFiller(filler.root, text=sentence, all_fields=True)
        step: dict[str, Any] = {}
        for key, prop in props.items():
            lowered = key.lower()
            preferred: Any = None
            if key == "tools":
                maximum = filler.resolve(prop).get("maxItems")
                preferred = tools[: int(maximum)] if maximum is not None else tools
            elif lowered == instruction_key:
                preferred = sentence
            elif lowered in TITLE_KEYS:
                preferred = make_title(sentence)
            elif lowered in ID_KEYS:
                preferred = f"step-{index + 1}"
                if filler.resolve(prop).get("type") == "integer":
                    preferred = index + 1
            step[key] = step_filler.fill(prop, key, required=key in required, preferred=preferred)
        return step


class SchemaFiller:
    """Builds a JSON value valid against a JSON schema, preferring meaningful text."""

    def __init__(self, root: dict[str, Any], *, text: str, all_fields: bool) -> None:
        self.root = root
        self.text = " ".join(text.split())
        self.all_fields = all_fields

    def resolve(self, raw: Any) -> dict[str, Any]:
        """Follow local ``$ref`` and merge ``allOf`` so the caller sees one plain schema."""
        if not isinstance(raw, dict):
            return {}
        schema: dict[str, Any] = raw
        for _ in range(_MAX_DEPTH):
            ref = schema.get("$ref")
            if not isinstance(ref, str) or not ref.startswith("#/"):
                break
            target: Any = self.root
            for part in ref[2:].split("/"):
                target = target.get(part, {}) if isinstance(target, dict) else {}
            schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        parts = schema.get("allOf")
        if isinstance(parts, list) and parts:
            merged = {k: v for k, v in schema.items() if k != "allOf"}
            for part in parts:
                sub = self.resolve(part)
                merged["properties"] = {**merged.get("properties", {}), **sub.get("properties", {})}
                merged["required"] = [*merged.get("required", []), *sub.get("required", [])]
                merged.update({k: v for k, v in sub.items() if k not in ("properties", "required")})
            schema = merged
        return schema

    def fill(
        self,
        schema: Any,
        name: str = "",
        *,
        required: bool = True,
        preferred: Any = None,
        skip: frozenset[str] = frozenset(),
        depth: int = 0,
    ) -> Any:
        s = self.resolve(schema)
        if "const" in s:
            return s["const"]
        if isinstance(s.get("enum"), list) and s["enum"]:
            return preferred if preferred in s["enum"] else s["enum"][0]
        variants = s.get("anyOf") or s.get("oneOf")
        if isinstance(variants, list) and variants:
            options = [v for v in variants if self.resolve(v).get("type") != "null"]
            nullable = len(options) < len(variants)
            if not options or (nullable and not required and self._kind(options[0]) != "string"):
                return None
            return self.fill(
                options[0], name, required=required, preferred=preferred, depth=depth + 1
            )
        kind = self._kind(s)
        if not required and "default" in s and kind != "string":
            return s["default"]
        if depth > _MAX_DEPTH:
            return {"object": {}, "array": [], "string": "", "null": None}.get(kind, 0)
        if kind == "object":
            return self._object(s, skip, depth)
        if kind == "array":
            return self._array(s, name, required, preferred, depth)
        if kind in ("integer", "number"):
            return self._number(s, kind == "integer", preferred)
        if kind == "boolean":
            return preferred if isinstance(preferred, bool) else False
        if kind == "null":
            return None
        return self._string(s, name, preferred)

    def _kind(self, schema: Any) -> str:
        s = self.resolve(schema)
        kind = s.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if isinstance(kind, str):
            return kind
        return "object" if "properties" in s else "string"

    def _object(self, s: dict[str, Any], skip: frozenset[str], depth: int) -> dict[str, Any]:
        props: dict[str, Any] = s.get("properties", {})
        required = set(s.get("required", ()))
        out: dict[str, Any] = {}
        for key, prop in props.items():
            if key in skip:
                continue
            if key in required or self.all_fields or key.lower() in TEXT_ARG_KEYS | {"timezone"}:
                out[key] = self.fill(prop, key, required=key in required, depth=depth + 1)
        return out

    def _array(
        self, s: dict[str, Any], name: str, required: bool, preferred: Any, depth: int
    ) -> Any:
        if isinstance(preferred, list):
            return preferred
        count = int(s.get("minItems", 1 if required else 0))
        if "maxItems" in s:
            count = min(count, int(s["maxItems"]))
        prefix = s.get("prefixItems")
        if isinstance(prefix, list):
            return [self.fill(p, name, depth=depth + 1) for p in prefix]
        items = [self.fill(s.get("items", {}), name, depth=depth + 1) for _ in range(count)]
        if s.get("uniqueItems") and all(isinstance(v, str) for v in items):
            items = [f"{v}-{i + 1}" if i else v for i, v in enumerate(items)]
        return items

    @staticmethod
    def _number(s: dict[str, Any], integer: bool, preferred: Any) -> int | float:
        numeric = isinstance(preferred, int | float) and not isinstance(preferred, bool)
        value: float = preferred if numeric else 1
        step = 1 if integer else 0.5
        if "minimum" in s:
            value = max(value, float(s["minimum"]))
        if "exclusiveMinimum" in s:
            value = max(value, float(s["exclusiveMinimum"]) + step)
        if "maximum" in s:
            value = min(value, float(s["maximum"]))
        if "exclusiveMaximum" in s:
            value = min(value, float(s["exclusiveMaximum"]) - step)
        multiple = s.get("multipleOf")
        if isinstance(multiple, int | float) and multiple > 0:
            value = math.ceil(value / multiple) * multiple
        return math.ceil(value) if integer else value

    def _string(self, s: dict[str, Any], name: str, preferred: Any) -> str:
        fmt = s.get("format")
        if isinstance(fmt, str) and fmt in FORMAT_VALUES:
            return FORMAT_VALUES[fmt]
        candidates = [preferred] if isinstance(preferred, str) else []
        candidates += [self._text_for(name), name or "value", "a", "0", "x"]
        pattern = s.get("pattern")
        fitted = [_fit(c, s) for c in candidates]
        for candidate in fitted:
            if not isinstance(pattern, str) or _matches(pattern, candidate):
                return candidate
        return fitted[0]

    def _text_for(self, name: str) -> str:
        key = name.lower()
        text = self.text or "offline test"
        if key in FREE_TEXT_KEYS:
            return f"{OFFLINE_MARK} {_clip(text, 200)}"
        if key in TEXT_ARG_KEYS or key in INSTRUCTION_KEYS:
            return _clip(text, 500)
        if "path" in key or key.endswith(("dir", "directory", "file", "filename")):
            return "."
        if "url" in key or "uri" in key:
            return "https://example.com/"
        if "timezone" in key or key == "tz":
            return "UTC"
        if key in ("language", "lang", "locale"):
            return "en"
        return make_title(text)


def find_plan_steps(root: dict[str, Any], filler: SchemaFiller) -> str | None:
    """The top-level array field whose items have a ``tools`` list of strings, if any."""
    props: dict[str, Any] = filler.resolve(root).get("properties", {})
    for key in sorted(props, key=lambda k: k != "steps"):
        field = filler.resolve(props[key])
        variants = field.get("anyOf")
        if isinstance(variants, list):
            arrays = (filler.resolve(v) for v in variants)
            field = next((v for v in arrays if v.get("type") == "array"), {})
        if field.get("type") != "array":
            continue
        tools = filler.resolve(
            filler.resolve(field.get("items")).get("properties", {}).get("tools")
        )
        if (
            tools.get("type") == "array"
            and filler.resolve(tools.get("items")).get("type") == "string"
        ):
            return key
    return None


def split_sentences(text: str) -> list[str]:
    """Lines and sentences of ``text``, without list bullets or numbering."""
    out: list[str] = []
    for line in text.splitlines():
        line = re.sub(r"^\s*(?:[-*\u2022]|\d+[.)])\s+", "", line).strip()
        out.extend(s.strip() for s in re.split(r"(?<=[.!?;])\s+", line) if len(s.strip()) > 1)
    return out


def pick_tools(sentence: str, tools: list[ToolSpec], limit: int = 2) -> list[str]:
    """The hinted tools sharing the most words with ``sentence`` (name words count double)."""
    words = _words(sentence)
    scores = [2 * len(words & _words(t.name)) + len(words & _words(t.description)) for t in tools]
    best = max(scores, default=0)
    if best == 0:
        return [tools[0].name]
    return [t.name for t, score in zip(tools, scores, strict=True) if score == best][:limit]


def make_title(text: str, words: int = 8) -> str:
    parts = text.split()
    title = " ".join(parts[:words]).rstrip(".,;:!?")
    return (title[:1].upper() + title[1:]) if title else "Step"


def last_user_text(messages: list[Message]) -> str:
    return next((m.content for m in reversed(messages) if m.role == "user" and m.content), "")


def _words(text: str) -> set[str]:
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", text)
    out = set()
    for word in re.findall(r"[a-z0-9]+", spaced.lower()):
        if len(word) < 3 or word in _STOPWORDS:
            continue
        out.add(word[:-1] if len(word) > 4 and word.endswith("s") else word)
    return out


def _fit(text: str, s: dict[str, Any]) -> str:
    if "maxLength" in s:
        text = text[: int(s["maxLength"])]
    low = int(s.get("minLength", 0))
    return text + "." * (low - len(text)) if len(text) < low else text


def _matches(pattern: str, value: str) -> bool:
    try:
        return re.search(pattern, value) is not None
    except re.error:
        return True


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def _call_id(turn: int, index: int, name: str) -> str:
    return "offline_" + hashlib.sha256(f"{turn}:{index}:{name}".encode()).hexdigest()[:16]


def _summary(results: list[Message], call_names: dict[str, str], request: str) -> str:
    if not results:
        return f"{OFFLINE_MARK} No tools were needed for: {_clip(request, 200) or 'the request'}"
    lines = [f"{OFFLINE_MARK} Finished after {len(results)} tool result(s)."]
    for result in results:
        name = result.tool_name or call_names.get(result.tool_call_id or "", "tool")
        verb = "reported an error" if result.is_error else "returned"
        lines.append(
            f"- {name} {verb}: {_clip(' '.join(result.content.split()), 160) or '(empty)'}"
        )
    return "\n".join(lines)


def _chunks(text: str, parts: int) -> list[str]:
    size = max(1, math.ceil(len(text) / parts))
    return [text[i : i + size] for i in range(0, len(text), size)]


def _usage(system: str, messages: list[Message], output: str) -> Usage:
    consumed = len(system) + sum(len(m.content) for m in messages)
    return Usage(input_tokens=consumed // 4 + 1, output_tokens=len(output) // 4 + 1)
