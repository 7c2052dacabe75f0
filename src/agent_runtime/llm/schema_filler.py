"""Builds JSON values that satisfy a JSON schema from the words of a request: the offline test
model's structured output and tool arguments (``llm/offline.py``). Deterministic; no I/O."""

from __future__ import annotations

import math
import re
from typing import Any

OFFLINE_MARK = "[offline-test]"
"""Starts every text the offline test model writes, so nobody mistakes it for a real answer."""


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
_FILE = re.compile(r"(?<![\w/.])((?:[\w.-]+/)*[\w-]{2,}\.[A-Za-z][A-Za-z0-9]{0,4})(?![\w/])")
_URL = re.compile(r"https?://[^\s\"'<>]+")
_NAMED = re.compile(r"\b(?:named|called|titled)\s+[\"'`]?([A-Za-z0-9][\w-]{0,63})", re.IGNORECASE)
_IDENTIFIER_KEYS = _keys("name id key slug identifier")
_MAX_DEPTH = 8


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
            return f"{OFFLINE_MARK} {clip(text, 200)}"
        if key in TEXT_ARG_KEYS or key in INSTRUCTION_KEYS:
            return clip(text, 500)
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


def make_title(text: str, words: int = 8) -> str:
    title = " ".join(text.split()[:words]).rstrip(".,;:!?")
    return (title[:1].upper() + title[1:]) if title else "Step"


def words_of(text: str) -> set[str]:
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


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."
