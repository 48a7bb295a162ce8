"""GGUF header facts (reference kernel, twin of ``mlguard_rs/src/gguf.rs``): metadata key/values and tensor infos,
every length checked against the bytes left; tensor data is never read. The facts are documented at
:func:`mlguard.engine.gguf_header`."""
from __future__ import annotations

import struct

MAX_STRING = 1 << 24
"""Bytes of one metadata string kept (longer ones are an error: a tokenizer string is short, a template < 1 MB)."""
MAX_ITEMS = 1 << 24
"""Metadata keys, tensors, and array elements per file."""
MAX_DIMS = 4
"""GGML_MAX_DIMS."""
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
STRING, ARRAY = 8, 9
KEPT_ARRAY = 16
"""Array elements kept in the facts (the rest are checked and skipped)."""


class GGUFError(ValueError):
    def __init__(self, message: str, offset: int):
        super().__init__(message)
        self.offset = offset


def header_facts(data) -> dict:
    """Facts about the GGUF header at the start of ``data``; facts read before an error are kept."""
    facts = {"version": None, "metadata": [], "tensors": [], "data_start": None, "error": None, "error_offset": None}
    reader = _Reader(data)
    try:
        if reader.take(4) != b"GGUF":
            raise GGUFError("not a GGUF file (magic)", 0)
        facts["version"] = version = reader.scalar("<I")
        if version not in (1, 2, 3):
            raise GGUFError(f"unknown GGUF version {version}", 4)
        reader.count_format = "<I" if version == 1 else "<Q"
        n_tensors, n_kv = reader.count(), reader.count()
        for what, n in (("tensors", n_tensors), ("metadata keys", n_kv)):
            if n > MAX_ITEMS or n > reader.left():
                raise GGUFError(f"{n:,} {what} declared, more than the file can hold", reader.pos)
        for _ in range(n_kv):
            at = reader.pos
            key = _text(reader.string())
            kind_at = reader.pos
            kind = reader.scalar("<I")
            facts["metadata"].append((key, kind, reader.value(kind, kind_at), at))
        for i in range(n_tensors):
            at = reader.pos
            name = _text(reader.string())
            n_dims = reader.scalar("<I")
            if n_dims > MAX_DIMS:
                raise GGUFError(f"tensor #{i + 1} has {n_dims} dimensions (at most {MAX_DIMS})", at)
            dims = [reader.count() for _ in range(n_dims)]
            facts["tensors"].append({"name": name, "dims": dims, "type": reader.scalar("<I"),
                                     "offset": reader.scalar("<Q"), "at": at})
        facts["data_start"] = reader.pos
    except GGUFError as exc:
        facts["error"], facts["error_offset"] = str(exc), exc.offset
    return facts


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


class _Reader:
    def __init__(self, data):
        self.data, self.pos, self.size = data, 0, len(data)
        self.count_format = "<Q"
        """Counts and lengths: 32-bit in version 1, 64-bit after."""

    def left(self) -> int:
        return self.size - self.pos

    def skip(self, n: int) -> int:
        """Step over ``n`` bytes; where they start."""
        if n > self.left():
            raise GGUFError(f"needs {n:,} bytes at offset {self.pos:,}, {self.left():,} left", self.pos)
        self.pos += n
        return self.pos - n

    def take(self, n: int) -> bytes:
        start = self.skip(n)
        return bytes(self.data[start:start + n])

    def scalar(self, fmt: str):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def count(self) -> int:
        return self.scalar(self.count_format)

    def string(self) -> bytes:
        """The bytes of a string."""
        at = self.pos
        n = self.count()
        if n > MAX_STRING:
            raise GGUFError(f"string of {n:,} bytes", at)
        return self.take(n)

    def value(self, kind: int, at: int):
        """A metadata value of type ``kind``, whose type field is at ``at``."""
        if kind in _SCALARS:
            return self.scalar(_SCALARS[kind])
        if kind == STRING:
            return _text(self.string())
        if kind == ARRAY:
            return self.array()
        raise GGUFError(f"unknown metadata value type {kind}", at)

    def array(self) -> list:
        """Element type, length, then the elements; the first ``KEPT_ARRAY`` are kept."""
        at = self.pos
        item = self.scalar("<I")
        n = self.count()
        if n > MAX_ITEMS or n > self.left():
            raise GGUFError(f"array of {n:,} elements, more than the file can hold", self.pos)
        if item in _SCALARS:  # fixed size: check the span, keep a few
            fmt = _SCALARS[item]
            width = struct.calcsize(fmt)
            start = self.skip(width * n)
            return [struct.unpack_from(fmt, self.data, start + i * width)[0] for i in range(min(n, KEPT_ARRAY))]
        if item != STRING:
            raise GGUFError("array of arrays" if item == ARRAY else f"unknown metadata value type {item}", at)
        kept = []
        for i in range(n):
            raw = self.string()
            if i < KEPT_ARRAY:
                kept.append(_text(raw))
        return kept
