"""NumPy ``.npy`` arrays (also the members of ``.npz`` archives, which reach this scanner through
the archive scanner).

The header (format versions 1-3) is a Python dict literal; it is parsed here with a small,
bounded parser for the few literal forms numpy writes -- never with ``eval`` or
``ast.literal_eval``. Numeric arrays must hold exactly ``prod(shape) * itemsize`` bytes. Arrays of
dtype object store their data as a pickle, which ``numpy.load(allow_pickle=True)`` unpickles: it is
reported and handed to the pickle scanner as a nested artifact named ``<name>@pickle``.
"""
from __future__ import annotations

import re
import struct
from typing import Iterator

from ..findings import Finding
from ..sniff import Format, Sniffed, sniff_bytes
from .interface import Artifact, Option, ScanContext

MAGIC = b"\x93NUMPY"
NUMPY_HEADER_LIMIT = 10_000
"""Headers longer than this are refused by ``numpy.load`` unless ``allow_pickle=True``."""
MAX_HEADER = 1 << 20
"""Longest header parsed here; longer ones are reported malformed."""
MAX_DEPTH = 32
"""Nesting of tuples/lists/dicts accepted in a header (structured dtypes nest)."""

_KEYS = frozenset({"descr", "fortran_order", "shape"})
_DESCR = re.compile(r"([<>|=])?([biufcOSaUVMm?])(\d*)(?:\[(\w+)\])?\Z")
_NAMED = {  # dtype names numpy also accepts as ``descr``
    "bool": 1, "int8": 1, "uint8": 1, "int16": 2, "uint16": 2, "int32": 4, "uint32": 4, "int64": 8,
    "uint64": 8, "float16": 2, "float32": 4, "float64": 8, "complex64": 8, "complex128": 16,
    "object": None, "O": None,
}
_FIXED = {"?": 1, "b": 1, "O": None}  # kinds that need no size digits


class HeaderError(ValueError):
    """The header is not one numpy would accept."""


class _Literal:
    """A bounded recursive-descent parser for the Python literals of an ``.npy`` header: dicts,
    tuples, lists, str, int (Python 2 ``L`` suffix allowed when ``py2``), True/False/None."""

    def __init__(self, text: str, py2: bool):
        self.s, self.i, self.py2 = text, 0, py2

    def parse(self):
        value = self._value(0)
        self._ws()
        if self.i != len(self.s):
            raise HeaderError(f"unexpected text at {self.i}")
        return value

    def _ws(self):
        s, i = self.s, self.i
        while i < len(s) and s[i] in " \t\r\n\f\v":
            i += 1
        self.i = i

    def _peek(self) -> str:
        self._ws()
        return self.s[self.i] if self.i < len(self.s) else ""

    def _value(self, depth: int):
        if depth > MAX_DEPTH:
            raise HeaderError("nested too deeply")
        c = self._peek()
        if not c:  # ("" is in every string: the tests below need a character)
            raise HeaderError("unexpected end")
        if c == "{":
            return self._dict(depth)
        if c in "([":
            return self._sequence(depth)
        if c in "'\"":
            return self._string()
        if c.isdigit() or c in "+-":
            return self._int()
        for word, value in (("True", True), ("False", False), ("None", None)):
            if self.s.startswith(word, self.i) and not self.s[self.i + len(word):self.i + len(word) + 1].isalnum():
                self.i += len(word)
                return value
        raise HeaderError(f"unexpected {c!r} at {self.i}")

    def _dict(self, depth: int) -> dict:
        self.i += 1
        out: dict = {}
        while True:
            if self._peek() == "}":
                self.i += 1
                return out
            key = self._value(depth + 1)
            if not isinstance(key, str):
                raise HeaderError("dict key is not a string")
            if self._peek() != ":":
                raise HeaderError(f"':' expected at {self.i}")
            self.i += 1
            out[key] = self._value(depth + 1)
            c = self._peek()
            if c == ",":
                self.i += 1
            elif c != "}":
                raise HeaderError(f"',' or '}}' expected at {self.i}")

    def _sequence(self, depth: int):
        close = ")" if self.s[self.i] == "(" else "]"
        self.i += 1
        items, comma = [], False
        while True:
            if self._peek() == close:
                self.i += 1
                break
            items.append(self._value(depth + 1))
            c = self._peek()
            comma = c == ","
            if comma:
                self.i += 1
            elif c != close:
                raise HeaderError(f"',' or {close!r} expected at {self.i}")
        if close == "]":
            return items
        if len(items) == 1 and not comma:
            return items[0]  # a parenthesised value, not a tuple
        return tuple(items)

    _ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t", "r": "\r", "0": "\0", "a": "\a",
                "b": "\b", "f": "\f", "v": "\v"}

    def _string(self) -> str:
        s, quote = self.s, self.s[self.i]
        i = self.i + 1
        out = []
        while True:
            if i >= len(s) or s[i] == "\n":
                raise HeaderError("unterminated string")
            c = s[i]
            if c == quote:
                self.i = i + 1
                return "".join(out)
            if c == "\\":
                nxt = s[i + 1:i + 2]
                if nxt in self._ESCAPES:
                    out.append(self._ESCAPES[nxt])
                    i += 2
                    continue
                width = {"x": 2, "u": 4, "U": 8}.get(nxt)
                digits = s[i + 2:i + 2 + width] if width else ""
                if not width or len(digits) != width or not all(d in "0123456789abcdefABCDEF" for d in digits):
                    raise HeaderError("bad escape in string")
                code = int(digits, 16)
                if code > 0x10FFFF:
                    raise HeaderError("bad escape in string")
                out.append(chr(code))
                i += 2 + width
                continue
            out.append(c)
            i += 1

    def _int(self) -> int:
        m = re.compile(r"[+-]?\d+").match(self.s, self.i)
        if not m or len(m.group()) > 40:
            raise HeaderError(f"bad number at {self.i}")
        self.i = m.end()
        if self.py2 and self.s[self.i:self.i + 1] in ("L", "l"):
            self.i += 1
        if self.s[self.i:self.i + 1] in (".", "e", "E", "j", "J", "x", "_"):
            raise HeaderError(f"not an integer at {m.start()}")
        return int(m.group())


def parse_header(data) -> tuple[dict, int, tuple[int, int]]:
    """``(header dict, offset where the data starts, (major, minor))``; raises HeaderError."""
    head = bytes(data[:12])
    if not head.startswith(MAGIC) or len(head) < 10:
        raise HeaderError("truncated magic")
    major, minor = head[6], head[7]
    if major == 1:
        (hlen,), start = struct.unpack("<H", head[8:10]), 10
    elif major in (2, 3):
        if len(head) < 12:
            raise HeaderError("truncated header length")
        (hlen,), start = struct.unpack("<I", head[8:12]), 12
    else:
        raise HeaderError(f"unknown format version {major}.{minor}")
    if hlen > MAX_HEADER:
        raise HeaderError(f"header of {hlen} bytes (larger than {MAX_HEADER})")
    end = start + hlen
    raw = bytes(data[start:end])
    if len(raw) < hlen:
        raise HeaderError("header longer than the file")
    try:
        text = raw.decode("utf-8" if major >= 3 else "latin-1")
    except UnicodeDecodeError:
        raise HeaderError("header is not UTF-8") from None
    d = _Literal(text, py2=major <= 2).parse()
    if not isinstance(d, dict):
        raise HeaderError("header is not a dict")
    if set(d) != _KEYS:
        raise HeaderError(f"header keys are {sorted(d)}, expected {sorted(_KEYS)}")
    shape = d["shape"]
    if not isinstance(shape, tuple) or not all(type(x) is int and x >= 0 for x in shape):
        raise HeaderError(f"shape {shape!r} is not a tuple of non-negative ints")
    if not isinstance(d["fortran_order"], bool):
        raise HeaderError("fortran_order is not a bool")
    return d, end, (major, minor)


def describe(descr, depth: int = 0) -> tuple[int | None, bool]:
    """``(itemsize or None when it cannot be known, holds Python objects)`` of a ``descr``."""
    if depth > MAX_DEPTH:
        raise HeaderError("dtype nested too deeply")
    if isinstance(descr, str):
        if descr in _NAMED:
            size = _NAMED[descr]
            return size, size is None
        m = _DESCR.match(descr)
        if not m:
            raise HeaderError(f"unrecognised dtype {descr!r}")
        _, kind, digits, _ = m.groups()
        if kind == "O":
            return None, True
        if not digits:
            if kind not in _FIXED:
                raise HeaderError(f"dtype {descr!r} has no size")
            return _FIXED[kind], False
        n = int(digits)
        return (4 * n if kind == "U" else n), False
    if isinstance(descr, list):
        total, objects = 0, False
        for field in descr:
            if not isinstance(field, tuple) or len(field) not in (2, 3):
                raise HeaderError("bad structured dtype field")
            size, obj = describe(field[1], depth + 1)
            objects |= obj
            count = 1
            if len(field) == 3:
                shape = field[2] if isinstance(field[2], tuple) else (field[2],)
                if not all(type(x) is int and x >= 0 for x in shape):
                    raise HeaderError("bad subarray shape")
                for x in shape:
                    count *= x
            total = None if total is None or size is None else total + size * count
        return total, objects
    raise HeaderError(f"dtype {descr!r} is neither a string nor a list of fields")


class NpyScanner:
    name = "npy"
    formats = frozenset({Format.NPY})
    options: dict[str, Option] = {}

    def scan(self, artifact: Artifact, ctx: ScanContext) -> Iterator[Finding | None]:
        buf = artifact.buffer()
        try:
            header, start, version = parse_header(buf)
            itemsize, objects = describe(header["descr"])
        except HeaderError as exc:
            yield ctx.finding(artifact, "npy-malformed", f"invalid .npy header: {exc}", offset=0,
                              evidence={"reason": str(exc)})
            return
        base = artifact.member or artifact.name
        hlen = start - (12 if version[0] >= 2 else 10)
        if hlen > NUMPY_HEADER_LIMIT:
            yield ctx.finding(artifact, "npy-malformed",
                              f"header of {hlen} bytes: numpy refuses it unless allow_pickle=True", offset=0,
                              evidence={"reason": "header-too-large", "header_length": hlen}, key="header")
        count = 1
        for x in header["shape"]:
            count *= x
        available = max(len(buf) - start, 0)
        if objects:
            yield ctx.finding(artifact, "npy-object-array",
                              f"array of Python objects, shape {header['shape']}: its data is a pickle, "
                              "unpickled by numpy.load(allow_pickle=True)", offset=start,
                              evidence={"descr": _short(header["descr"]), "shape": list(header["shape"]),
                                        "pickle_offset": start})
            if available:
                yield from self._nested(artifact, ctx, buf, start, f"{base}@pickle",
                                        Sniffed(Format.PICKLE, None, "pickle of a numpy object array"))
            else:
                yield ctx.finding(artifact, "npy-malformed", "object array without data", offset=start,
                                  evidence={"reason": "no-data"}, key="size")
            return
        expected = count * itemsize
        if available < expected:
            yield ctx.finding(artifact, "npy-malformed",
                              f"shape {header['shape']} x {itemsize}-byte items needs {expected} bytes, "
                              f"the file holds {available}", offset=start,
                              evidence={"reason": "data-short", "expected": expected, "actual": available}, key="size")
        elif available > expected:
            yield ctx.finding(artifact, "npy-malformed",
                              f"{available - expected} bytes follow the array data (shape {header['shape']}, "
                              f"{itemsize}-byte items)", offset=start + expected,
                              evidence={"reason": "trailing-bytes", "expected": expected, "actual": available},
                              key="size")
            tail = memoryview(buf)[start + expected:]
            try:
                sniffed = sniff_bytes(tail, base)
            finally:
                tail.release()
            if sniffed.format not in (Format.BINARY, Format.EMPTY) or sniffed.embedded:
                yield from self._nested(artifact, ctx, buf, start + expected, f"{base}@trailing", sniffed)

    @staticmethod
    def _nested(artifact: Artifact, ctx: ScanContext, buf, start: int, member: str,
                sniffed: Sniffed) -> Iterator[Finding | None]:
        view = memoryview(buf)[start:]
        try:
            child = Artifact(artifact.path, sniffed, len(view), data=view, member=member, depth=artifact.depth + 1)
            yield from ctx.scan_nested(child)
        finally:
            view.release()


def _short(descr) -> str:
    text = descr if isinstance(descr, str) else repr(descr)
    return text if len(text) <= 200 else text[:200] + "..."


SCANNER = NpyScanner()
