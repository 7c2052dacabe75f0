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

OFFLINE_MARK = "[offline-test]"


def _keys(words: str) -> frozenset[str]:
    return frozenset(words.split())


FREE_TEXT_KEYS = _keys("summary notes note rationale reasoning explanation comment comments remarks")
INSTRUCTION_KEYS = ("instruction", "instructions", "prompt", "task", "goal", "details", "description")
TITLE_KEYS = _keys("title name label heading")
ID_KEYS = _keys("id step_id key")
DEPENDS_KEYS = _keys("depends_on dependencies after requires needs")
TEXT_ARG_KEYS = _keys("query q text content message prompt input search question instruction")
FORMAT_VALUES = {
    "date-time": "2000-01-01T00:00:00Z",
    "date": "2000-01-01",
    "time": "00:00:00",
    "email": "offline-test@example.com",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "hostname": "localhost",
    "ipv4": "127.0.0.1",
}
_STOPWORDS = _keys(
    "the and for with from into that this then than them they what when where which while your you "
    "are was were will would can could should have has had not but all any its our out use using please "
    "also about after before each every some more most"
)
_HEADER = re.compile(r"(?:\A|\n[ \t]*\n)[ \t]*([^\n]{1,80}):[ \t]*\n")  # "Header:" opening a paragraph
_FILE = re.compile(r"(?<![\w/.])((?:[\w.-]+/)*[\w-]{2,}\.[A-Za-z][A-Za-z0-9]{0,4})(?![\w/])")
_URL = re.compile(r"https?://[^\s\"'<>]+")
_NAMED = re.compile(r"\b(?:named|called|titled)\s+[\"'`]?([A-Za-z0-9][\w-]{0,63})", re.IGNORECASE)
_IDENTIFIER_KEYS = _keys("name id key slug identifier")
_REFERS_BACK = re.compile(r"\b(?:the same|again|as before|likewise)\b", re.IGNORECASE)
_EARLIER_REQUEST = re.compile(r"request: (.*?)(?: \| plan: | \| result: |$)", re.MULTILINE)
_MAX_DEPTH = 8


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


class SchemaFiller:
    """Builds a JSON value valid against a JSON schema, preferring meaningful text.

    ``all_fields`` fills every property (structured output); otherwise only required ones plus
    those with an obvious value (tool arguments).
    """

    def __init__(self, root: dict[str, Any], *, text: str, all_fields: bool, context: str = "") -> None:
        self.root = root
        self.text = text.strip()
        self.context = context  # the whole message, searched for names and paths the text lacks
        self.flat = " ".join(text.split())
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
        parts = schema.get("allOf") or ()
        schema = {k: v for k, v in schema.items() if k != "allOf"} if parts else schema
        for part in parts:
            sub = self.resolve(part)
            props = {**schema.get("properties", {}), **sub.get("properties", {})}
            needed = [*schema.get("required", []), *sub.get("required", [])]
            schema = {**schema, **sub}
            schema.update({"properties": props, "required": needed} if props else {})
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
        kind = self._kind(s)
        if not required and "default" in s and ("enum" in s or kind != "string"):
            return s["default"]
        if "const" in s:
            return s["const"]
        if s.get("enum"):
            return preferred if preferred in s["enum"] else s["enum"][0]
        variants = s.get("anyOf") or s.get("oneOf")
        if variants:
            options = [v for v in variants if self.resolve(v).get("type") != "null"]
            optional = len(options) < len(variants) and not required
            if not options or (optional and self._kind(options[0]) != "string"):  # keep free text
                return None
            return self.fill(options[0], name, required=required, preferred=preferred, depth=depth + 1)
        if depth > _MAX_DEPTH:
            return {"object": {}, "array": [], "string": "", "null": None}.get(kind, 0)
        if kind == "object":
            props: dict[str, Any] = s.get("properties", {})
            needed = set(s.get("required", ()))
            return {
                k: self.fill(p, k, required=k in needed, depth=depth + 1)
                for k, p in props.items()
                if k not in skip and (k in needed or self.all_fields or k.lower() in TEXT_ARG_KEYS | {"timezone"})
            }
        if kind == "array":
            if isinstance(preferred, list):
                return preferred
            if isinstance(s.get("prefixItems"), list):
                return [self.fill(p, name, depth=depth + 1) for p in s["prefixItems"]]
            count = min(int(s.get("minItems", 1 if required else 0)), int(s.get("maxItems", 1 << 16)))
            items = [self.fill(s.get("items"), name, depth=depth + 1) for _ in range(count)]
            unique = s.get("uniqueItems") and all(isinstance(v, str) for v in items)
            return [f"{v}-{i + 1}" if i else v for i, v in enumerate(items)] if unique else items
        if kind in ("integer", "number"):
            return _number(s, kind == "integer", preferred)
        if kind in ("boolean", "null"):
            return preferred if isinstance(preferred, bool) else (False if kind == "boolean" else None)
        return self._string(s, name, preferred)

    def _kind(self, schema: Any) -> str:
        s = self.resolve(schema)
        kind = s.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if isinstance(kind, str):
            return kind
        return "object" if "properties" in s else "string"

    def _string(self, s: dict[str, Any], name: str, preferred: Any) -> str:
        if s.get("format") in FORMAT_VALUES:
            return FORMAT_VALUES[s["format"]]
        candidates = [preferred] if isinstance(preferred, str) else []
        candidates += [self._text_for(name, s.get("format")), name or "value", "a", "0", "x"]
        low, high = int(s.get("minLength", 0)), s.get("maxLength")
        fitted = [c[: int(high) if high is not None else None].ljust(low, ".") for c in candidates]
        pattern = s.get("pattern")
        return next((c for c in fitted if not isinstance(pattern, str) or _matches(pattern, c)), fitted[0])

    def _text_for(self, name: str, fmt: Any) -> str:
        key = name.lower()
        text = self.flat or "offline test"
        if key in FREE_TEXT_KEYS:
            return f"{OFFLINE_MARK} {_clip(text, 200)}"
        if key in TEXT_ARG_KEYS or key in INSTRUCTION_KEYS:
            return _clip(text, 500)
        if "url" in key or "uri" in key or fmt in ("uri", "url"):
            return self._find(_URL, 0) or "https://example.com/"
        if "path" in key or key.endswith(("dir", "directory", "file", "filename")):
            return (self._find(_FILE, 1) if not key.endswith(("dir", "directory")) else None) or "."
        if not self.all_fields and (key in _IDENTIFIER_KEYS or key.endswith(("_name", "_id"))):
            first = next((w.lower() for w in re.findall(r"[A-Za-z]\w{2,}", text) if w.lower() not in _STOPWORDS), "")
            return self._find(_NAMED, 1) or first or "item"
        if "timezone" in key or key == "tz":
            return "UTC"
        if key in ("language", "lang", "locale"):
            return "en"
        return make_title(text)

    def _find(self, pattern: re.Pattern[str], group: int) -> str | None:
        found = pattern.search(self.text) or pattern.search(self.context)
        return found.group(group) if found else None


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
    reason = "every step produced a result" if met else _clip("; ".join(missing) or "no step results", 300)
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
    words = _words(sentence)
    scores = [2 * len(words & _words(t.name)) + len(words & _words(t.description)) for t in tools]
    best = max(scores, default=0)
    if best == 0:
        return [tools[0].name]
    return [t.name for t, score in zip(tools, scores, strict=True) if score == best][:limit]


def _referred(sentence: str, earlier: str) -> str:
    """``sentence``, with the earlier request it refers back to (if it does and there is one)."""
    return f"{sentence} {earlier}" if earlier and _REFERS_BACK.search(sentence) else sentence


def make_title(text: str, words: int = 8) -> str:
    title = " ".join(text.split()[:words]).rstrip(".,;:!?")
    return (title[:1].upper() + title[1:]) if title else "Step"


def _words(text: str) -> set[str]:
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", text).lower()
    found = (w for w in re.findall(r"[a-z0-9]+", spaced) if len(w) > 2 and w not in _STOPWORDS)
    return {w[:-1] if len(w) > 4 and w.endswith("s") else w for w in found}


def _number(s: dict[str, Any], integer: bool, preferred: Any) -> int | float:
    value: float = preferred if isinstance(preferred, int | float) and not isinstance(preferred, bool) else 1
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


def _matches(pattern: str, value: str) -> bool:
    try:
        return re.search(pattern, value) is not None
    except re.error:  # a pattern Python cannot read: do not let it block an answer
        return True


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def _summary(results: list[Message], call_names: dict[str, str], request: str) -> str:
    if not results:
        return f"{OFFLINE_MARK} Done without tools. {_clip(' '.join(request.split()), 300)}".rstrip()
    lines = [f"{OFFLINE_MARK} Finished after {len(results)} tool result(s)."]
    for result in results:
        name = result.tool_name or call_names.get(result.tool_call_id or "", "tool")
        verb = "reported an error" if result.is_error else "returned"
        lines.append(f"- {name} {verb}: {_clip(' '.join(result.content.split()), 160) or '(empty)'}")
    return "\n".join(lines)


def _usage(system: str, messages: list[Message], output: str) -> Usage:
    consumed = len(system) + sum(len(m.content) for m in messages)
    return Usage(input_tokens=consumed // 4 + 1, output_tokens=len(output) // 4 + 1)
