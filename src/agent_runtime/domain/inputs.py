"""What the edge accepts: every value a request carries is checked here before any service sees it.

The store must never be handed what a database cannot hold or give back: PostgreSQL's ``text`` and
``jsonb`` reject NUL characters, neither backend round-trips lone UTF-16 surrogates, JSON has no
``NaN``/``Infinity``, and deeply nested documents cost recursion on every read. So a request value
is refused with a 422 naming its field (``metadata.a.b``) when it holds any of those, the same on
both backends, instead of being stored half-way or unreadable. Limits are documented in the
README's limits table.
"""

from __future__ import annotations

import math
from typing import Any

SESSION_ID = r"^[A-Za-z0-9._:-]{1,128}$"
"""A session id: 1 to 128 letters, digits, ``.``, ``_``, ``:`` or ``-`` (chosen by the client)."""
MAX_JSON_DEPTH = 32
"""Nesting depth allowed in free-form JSON (``metadata``): objects and arrays inside each other."""
MAX_CURSOR = 2**31 - 1
"""Largest event sequence number a cursor may name (``integer`` on PostgreSQL)."""
CURSOR_PATTERN = (
    r"^(|[0-9]{1,9}|1[0-9]{9}|20[0-9]{8}|21[0-3][0-9]{7}|214[0-6][0-9]{6}|2147[0-3][0-9]{5}"
    r"|21474[0-7][0-9]{4}|214748[0-2][0-9]{3}|2147483[0-5][0-9]{2}|21474836[0-3][0-9]|214748364[0-7])$"
)
"""``Last-Event-ID``: empty (no position) or a decimal number from 0 to ``MAX_CURSOR``, no sign."""
NO_NUL = r"^[^\x00]*$"
"""The JSON Schema ``pattern`` of storable text (lone surrogates cannot be written in valid JSON text)."""
NON_BLANK = r"^[^\x00]*[^\x00 \t\n\v\f\r][^\x00]*$"
"""Storable text with a character other than ASCII white space (``BLANK``; regex engines disagree on
which other characters ``\\s`` covers, so the contract names them: ``domain.text.BLANK``)."""


def text_problem(value: str, *, nul_ok: bool = False) -> str | None:
    """Why ``value`` cannot be stored as text, or None. ``nul_ok``: the value goes into a JSON
    document, which the store keeps faithfully on both backends (``store/pg_text.py``)."""
    if not nul_ok and "\x00" in value:
        return "must not contain NUL (\\u0000) characters"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "must be valid Unicode (it contains a lone surrogate)"
    return None


def json_problem(value: Any, *, max_depth: int = MAX_JSON_DEPTH, nul_ok: bool = False) -> tuple[str, str] | None:
    """The first (path, reason) in the JSON ``value`` that cannot be stored, or None.

    Walks iteratively, so a hostile depth costs no recursion."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth >= max_depth:
                return path, f"is nested deeper than {max_depth} levels"
            children = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in children:
                if isinstance(key, str) and (why := text_problem(key, nul_ok=nul_ok)) is not None:
                    return _join(path, "<key>"), f"has a key that {why}"
                stack.append((child, _join(path, str(key)), depth + 1))
        elif isinstance(item, str):
            if (why := text_problem(item, nul_ok=nul_ok)) is not None:
                return path, why
        elif isinstance(item, float) and not math.isfinite(item):
            return path, "must be a finite number (NaN and Infinity are not JSON)"
    return None


def check_text(value: str) -> str:
    """A pydantic ``AfterValidator`` for text fields."""
    if (why := text_problem(value)) is not None:
        raise ValueError(why)
    return value


def check_json(value: Any) -> Any:
    """A pydantic ``AfterValidator`` for free-form JSON fields (NUL allowed: stored faithfully);
    the error names the inner path."""
    found = json_problem(value, nul_ok=True)
    if found is not None:
        path, why = found
        raise ValueError(f"{path}: {why}" if path else why)
    return value


def whole_number(value: Any) -> Any:
    """A pydantic ``BeforeValidator``: a JSON integer (``3`` or ``3.0``); refuses strings and booleans."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be an integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("must be an integer")
        return int(value)
    return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
