"""safetensors header facts (reference kernel, twin of ``mlguard_rs/src/safetensors.rs``): the 8-byte length, its
bounds, and the header read as strict JSON by a bounded parser that records repeated keys at every depth.

Reads only the 8-byte length and the header; never the tensor data. The facts and the JSON rules are documented at
:func:`mlguard.engine.safetensors_header`.
"""
from __future__ import annotations

import re
import struct

MAX_HEADER = 100_000_000
"""The official loader's cap on the header length."""
MAX_TENSORS = 1_000_000
"""Distinct top-level keys (tensors and ``__metadata__``)."""
MAX_VALUES = 1 << 24
"""JSON values in the whole header."""
MAX_DEPTH = 64
"""Nested objects and arrays (the header object is at depth 1)."""
METADATA = "__metadata__"

_WS = re.compile(r"[ \t\n\r]*")
_PLAIN = re.compile(r'[^"\\\x00-\x1f]*')
_INT = re.compile(r"0|[1-9][0-9]*")
_DIGITS = re.compile(r"[0-9]+")
_HEX4 = re.compile(r"[0-9a-fA-F]{4}")
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_LITERALS = {"t": ("true", True), "f": ("false", False), "n": ("null", None)}
_KINDS = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}


def header_facts(data, file_size: int | None = None) -> dict:
    """Facts about the safetensors header at the start of ``data`` (a buffer of the file, or at least of its first
    8 + header length bytes); ``file_size`` defaults to ``len(data)``."""
    size = len(data) if file_size is None else file_size
    facts = {"header_length": None, "error": None, "detail": None, "duplicates": [], "metadata": None,
             "tensors": []}
    if size < 8 or len(data) < 8:
        return {**facts, "error": "short",
                "detail": f"{min(size, len(data))} bytes, fewer than the 8 of the length field"}
    (n,) = struct.unpack("<Q", bytes(data[:8]))
    facts["header_length"] = n
    if n > MAX_HEADER:
        return {**facts, "error": "too-large", "detail": f"header length {n:,} over the loader's cap of {MAX_HEADER:,}"}
    if n > size - 8:
        return {**facts, "error": "beyond-file", "detail": f"header length {n:,} but only {size - 8:,} bytes follow"}
    raw = bytes(data[8:8 + n])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return {**facts, "error": "not-utf8", "detail": f"header is not UTF-8 at byte {8 + exc.start}"}
    parser = _Parser(text)
    try:
        top = parser.document()
    except _Stop as stop:
        return {**facts, "error": stop.kind, "detail": stop.detail(text)}
    if not isinstance(top, _Header):
        return {**facts, "error": "not-object", "detail": f"header is a JSON {_KINDS[type(top)]}, not an object"}
    return {**facts, "duplicates": parser.duplicates, "metadata": top.metadata, "tensors": top.tensors}


class _Stop(Exception):
    """Parsing stops: an error kind, the character position (None for ``too-many``) and the reason."""

    def __init__(self, kind: str, pos: int | None, reason: str = ""):
        super().__init__(kind)
        self.kind, self.pos, self.reason = kind, pos, reason

    def detail(self, text: str) -> str:
        if self.pos is None:
            return self.reason
        at = 8 + len(text[:self.pos].encode())
        if self.kind == "too-deep":
            return f"header nested deeper than {MAX_DEPTH} at byte {at}"
        return f"header is not strict JSON at byte {at}: {self.reason}"


class _Header:
    """The header object, consumed entry by entry (the parser sees a dict)."""

    def __init__(self):
        self.index: dict[str, int] = {}
        self.tensors: list[dict] = []
        self.metadata = None

    def __contains__(self, key: str) -> bool:
        return self.metadata is not None if key == METADATA else key in self.index

    def __setitem__(self, key: str, entry) -> None:
        if key not in self and len(self.index) + (self.metadata is not None) >= MAX_TENSORS:
            raise _Stop("too-many", None, f"more than {MAX_TENSORS:,} entries")
        if key == METADATA:
            self.metadata = entry if isinstance(entry, dict) else {"": entry}
        elif key in self.index:
            self.tensors[self.index[key]] = _tensor(key, entry)
        else:
            self.index[key] = len(self.tensors)
            self.tensors.append(_tensor(key, entry))


class _Parser:
    """Strict JSON (RFC 8259) over the header text; positions are character indices. Each method takes the position
    of what it parses and returns (value, end) or the end."""

    def __init__(self, text: str):
        self.s, self.n, self.values, self.duplicates = text, len(text), 0, []

    def fail(self, pos: int, reason: str):
        raise _Stop("not-json", pos, "unexpected end" if pos >= self.n else reason)

    def ws(self, pos: int) -> int:
        return _WS.match(self.s, pos).end()

    def count(self) -> None:
        self.values += 1
        if self.values > MAX_VALUES:
            raise _Stop("too-many", None, f"more than {MAX_VALUES:,} JSON values")

    def document(self):
        """The header object as a :class:`_Header`, or the other JSON value the header is."""
        pos = self.ws(0)
        if self.s.startswith("{", pos):
            self.count()
            top = _Header()
            pos = self.object(pos, 1, top)
        else:
            top, pos = self.value(pos, 0)
        pos = self.ws(pos)
        if pos < self.n:
            self.fail(pos, "trailing characters")
        return top

    def value(self, pos: int, depth: int):
        s = self.s
        pos = self.ws(pos)
        if pos >= self.n:
            self.fail(pos, "expected a value")
        self.count()
        c = s[pos]
        if c in "{[" and depth >= MAX_DEPTH:
            raise _Stop("too-deep", pos)
        if c == "{":
            out = {}
            return out, self.object(pos, depth + 1, out)
        if c == "[":
            return self.array(pos, depth + 1)
        if c == '"':
            return self.string(pos)
        if c == "-" or "0" <= c <= "9":
            return self.number(pos)
        if c in _LITERALS:
            word, value = _LITERALS[c]
            if s.startswith(word, pos):
                return value, pos + len(word)
            self.fail(pos, "invalid literal")
        self.fail(pos, "expected a value")

    def object(self, pos: int, depth: int, into) -> int:
        s = self.s
        pos = self.ws(pos + 1)
        if s.startswith("}", pos):
            return pos + 1
        while True:
            pos = self.ws(pos)
            if not s.startswith('"', pos):
                self.fail(pos, "expected a string key")
            key, pos = self.string(pos)
            pos = self.ws(pos)
            if not s.startswith(":", pos):
                self.fail(pos, "expected ':'")
            value, pos = self.value(pos + 1, depth)
            if key in into:
                self.duplicates.append(key)
            into[key] = value
            pos = self.ws(pos)
            if s.startswith(",", pos):
                pos += 1
            elif s.startswith("}", pos):
                return pos + 1
            else:
                self.fail(pos, "expected ',' or '}'")

    def array(self, pos: int, depth: int):
        s = self.s
        items: list = []
        pos = self.ws(pos + 1)
        if s.startswith("]", pos):
            return items, pos + 1
        while True:
            item, pos = self.value(pos, depth)
            items.append(item)
            pos = self.ws(pos)
            if s.startswith(",", pos):
                pos += 1
            elif s.startswith("]", pos):
                return items, pos + 1
            else:
                self.fail(pos, "expected ',' or ']'")

    def string(self, pos: int):
        s = self.s
        pos += 1
        end = _PLAIN.match(s, pos).end()
        if s.startswith('"', end):  # no escapes: the common case
            return s[pos:end], end + 1
        parts = []
        while True:
            parts.append(s[pos:end])
            if s.startswith('"', end):
                return "".join(parts), end + 1
            if not s.startswith("\\", end):
                self.fail(end, "control character in string")
            char, pos = self.escape(end)
            parts.append(char)
            end = _PLAIN.match(s, pos).end()

    def escape(self, at: int):
        """The escape at ``at`` (a backslash); a surrogate pair is one escape."""
        s = self.s
        c = s[at + 1:at + 2]
        if c in _ESCAPES:
            return _ESCAPES[c], at + 2
        code = self.hex4(at + 2) if c == "u" else None
        if code is None:
            self.fail(at, "invalid escape")
        length = 6
        if 0xD800 <= code < 0xDC00 and s.startswith("\\u", at + 6):
            low = self.hex4(at + 8)
            if low is not None and 0xDC00 <= low < 0xE000:
                code, length = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00), 12
        if 0xD800 <= code < 0xE000:
            self.fail(at, "lone surrogate")
        return chr(code), at + length

    def hex4(self, pos: int) -> int | None:
        m = _HEX4.match(self.s, pos)
        return int(m.group(), 16) if m else None

    def number(self, start: int):
        """Integers in [-2**63, 2**64) are ints, other numbers floats (as serde_json reads them)."""
        s = self.s
        pos = start + s.startswith("-", start)
        m = _INT.match(s, pos)
        if m is None:
            self.fail(pos, "invalid number")
        pos, integer = m.end(), True
        if s.startswith(".", pos):
            pos, integer = self.digits(pos + 1), False
        if s.startswith(("e", "E"), pos):
            pos += 1
            pos, integer = self.digits(pos + s.startswith(("+", "-"), pos)), False
        text = s[start:pos]
        if integer and len(text) <= 20:
            value = int(text)
            if -(1 << 63) <= value < 1 << 64:
                return value, pos
        value = float(text)
        if value in (float("inf"), float("-inf")):
            self.fail(start, "number out of range")
        return value, pos

    def digits(self, pos: int) -> int:
        m = _DIGITS.match(self.s, pos)
        if m is None:
            self.fail(pos, "invalid number")
        return m.end()


def _tensor(name: str, entry) -> dict:
    out = {"name": name, "dtype": None, "shape": None, "begin": None, "end": None, "problem": None}
    if not isinstance(entry, dict):
        return {**out, "problem": "entry is not an object"}
    unknown = sorted(set(entry) - {"dtype", "shape", "data_offsets"})
    if isinstance(entry.get("dtype"), str):
        out["dtype"] = entry["dtype"]
    shape = entry.get("shape")
    if isinstance(shape, list) and all(type(d) is int for d in shape):
        out["shape"] = shape
    offsets = entry.get("data_offsets")
    if isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets):
        out["begin"], out["end"] = offsets
    missing = [k for k, v in (("dtype", out["dtype"]), ("shape", out["shape"]), ("data_offsets", out["begin"]))
               if v is None]
    if missing:
        out["problem"] = f"missing or malformed {', '.join(missing)}"
    elif any(d < 0 for d in out["shape"]):
        out["problem"] = "negative dimension"
    elif out["begin"] < 0 or out["end"] < 0:
        out["problem"] = "negative offset"
    elif unknown:
        out["problem"] = f"unknown keys {', '.join(unknown)}"
    return out
