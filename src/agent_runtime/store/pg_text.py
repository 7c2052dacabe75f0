"""PostgreSQL: NUL (U+0000) in stored text, escaped at the store boundary and restored on read.

PostgreSQL's ``text`` and ``jsonb`` cannot hold U+0000, but a model's output or a tool's result may
contain it (client input with NUL is refused at the edge, ``domain/inputs.py``). SQLite stores it
as is; on PostgreSQL every string the store writes is escaped with U+0001 (SOH) as the escape
character, and every string it reads is unescaped, so readers see exactly what was written:

=========  ==============
written    stored
=========  ==============
U+0000     U+0001 ``0``
U+0001     U+0001 ``1``
=========  ==============

Only strings holding one of the two characters change, and only they cost more than a substring
test. The write path escapes at the JSON text of the document (``pg_document``: ``json.dumps``
always writes these characters as ``\\u0000``/``\\u0001``); JSON columns are restored by the
engine's JSON deserializer (``store/engine.py``), text columns by :class:`EscapedString` and
:class:`EscapedText` (their result and bind processors run on PostgreSQL only; on SQLite they add
nothing). Text stored before this
encoding that holds U+0001 followed by ``0`` or ``1`` would read back changed (no such data is
expected: nothing produced it on PostgreSQL, where U+0000 could not be written at all).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

_WRITTEN_ESCAPE = re.compile(r"\\(u000[01]|.)", re.DOTALL)
"""One escape in JSON text, left to right: an escaped backslash is consumed whole, so a literal
``\\u0000`` (backslash, then the text ``u0000``) is never taken for an escape."""
_STORED_ESCAPE = re.compile(r"\\(u0001[01]|.)", re.DOTALL)
_STORED_TEXT = re.compile("\x01([01])")
_ENCODED = {"u0000": "\\u00010", "u0001": "\\u00011"}
_DECODED = {"u00010": "\\u0000", "u00011": "\\u0001"}


def _encode_escape(match: re.Match[str]) -> str:
    return _ENCODED.get(match[1], match[0])


def _decode_escape(match: re.Match[str]) -> str:
    return _DECODED.get(match[1], match[0])


def encode_json(text: str) -> str:
    """JSON text with every U+0000 and U+0001 in its strings (and keys) escaped for PostgreSQL."""
    if "\\u000" not in text:
        return text
    return _WRITTEN_ESCAPE.sub(_encode_escape, text)


def decode_json_text(text: str) -> str:
    """The JSON text PostgreSQL returned, with the escapes of :func:`encode_json` undone."""
    if "\\u0001" not in text:
        return text
    return _STORED_ESCAPE.sub(_decode_escape, text)


def loads(text: str) -> Any:
    """The engine's JSON deserializer on PostgreSQL."""
    return json.loads(decode_json_text(text))


def encode_text(value: str) -> str:
    if "\x00" not in value and "\x01" not in value:
        return value
    return value.replace("\x01", "\x011").replace("\x00", "\x010")


def decode_text(value: str) -> str:
    if "\x01" not in value:
        return value
    return _STORED_TEXT.sub(lambda m: "\x00" if m[1] == "0" else "\x01", value)


def _decode_or_none(value: str | None) -> str | None:
    return None if value is None else decode_text(value)


def _encode_or_none(value: str | None) -> str | None:
    return None if value is None else encode_text(value)


class EscapedString(sa.types.TypeDecorator[str]):
    """A ``String(n)`` column that may hold NUL: escaped on PostgreSQL as above, untouched on SQLite."""

    impl = sa.String
    cache_ok = True

    def bind_processor(self, dialect: sa.Dialect) -> Callable[[Any], Any] | None:
        return _encode_or_none if dialect.name == "postgresql" else super().bind_processor(dialect)

    def result_processor(self, dialect: sa.Dialect, coltype: Any) -> Callable[[Any], Any] | None:
        return _decode_or_none if dialect.name == "postgresql" else super().result_processor(dialect, coltype)


class EscapedText(EscapedString):
    """A ``Text`` column that may hold NUL (see :class:`EscapedString`)."""

    impl = sa.Text
    cache_ok = True
