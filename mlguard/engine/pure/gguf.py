"""GGUF header facts (reference kernel): metadata key/values and tensor infos, every length checked against the
bytes left; tensor data is never read."""
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
    """``{"version", "metadata": [(key, type, value, offset)], "tensors": [{name, dims, type, offset}],
    "data_start", "error", "error_offset"}``. Facts read before an error are kept."""
    facts = {"version": None, "metadata": [], "tensors": [], "data_start": None, "error": None, "error_offset": None}
    reader = _Reader(data)
    try:
        if reader.take(4) != b"GGUF":
            raise GGUFError("not a GGUF file (magic)", 0)
        facts["version"] = version = reader.scalar("<I")
        if version not in (1, 2, 3):
            raise GGUFError(f"unknown GGUF version {version}", 4)
        count = "<I" if version == 1 else "<Q"
        n_tensors, n_kv = reader.scalar(count), reader.scalar(count)
        for what, n in (("tensors", n_tensors), ("metadata keys", n_kv)):
            if n > MAX_ITEMS or n > reader.left():
                raise GGUFError(f"{n:,} {what} declared, more than the file can hold", reader.pos)
        for _ in range(n_kv):
            at = reader.pos
            key = reader.string(version)
            kind = reader.scalar("<I")
            facts["metadata"].append((key, kind, reader.value(kind, version), at))
        for _ in range(n_tensors):
            at = reader.pos
            name = reader.string(version)
            n_dims = reader.scalar("<I")
            if n_dims > MAX_DIMS:
                raise GGUFError(f"tensor {name!r} has {n_dims} dimensions (at most {MAX_DIMS})", at)
            dims = [reader.scalar(count) for _ in range(n_dims)]
            facts["tensors"].append({"name": name, "dims": dims, "type": reader.scalar("<I"),
                                     "offset": reader.scalar("<Q"), "at": at})
        facts["data_start"] = reader.pos
    except GGUFError as exc:
        facts["error"], facts["error_offset"] = str(exc), exc.offset
    return facts


class _Reader:
    def __init__(self, data):
        self.data, self.pos, self.size = data, 0, len(data)

    def left(self) -> int:
        return self.size - self.pos

    def take(self, n: int) -> bytes:
        if n > self.left():
            raise GGUFError(f"needs {n:,} bytes at offset {self.pos:,}, {self.left():,} left", self.pos)
        out = bytes(self.data[self.pos:self.pos + n])
        self.pos += n
        return out

    def scalar(self, fmt: str):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self, version: int) -> str:
        n = self.scalar("<I" if version == 1 else "<Q")
        if n > MAX_STRING:
            raise GGUFError(f"string of {n:,} bytes", self.pos - 8)
        return self.take(n).decode("utf-8", "replace")

    def value(self, kind: int, version: int):
        if kind in _SCALARS:
            return self.scalar(_SCALARS[kind])
        if kind == STRING:
            return self.string(version)
        if kind == ARRAY:
            item = self.scalar("<I")
            n = self.scalar("<I" if version == 1 else "<Q")
            if n > MAX_ITEMS or n > self.left():
                raise GGUFError(f"array of {n:,} elements, more than the file can hold", self.pos)
            if item in _SCALARS:  # fixed size: check the span, keep a few
                width = struct.calcsize(_SCALARS[item])
                start = self.pos
                self.take(width * n)
                return [struct.unpack_from(_SCALARS[item], self.data, start + i * width)[0]
                        for i in range(min(n, KEPT_ARRAY))]
            if item == ARRAY:
                raise GGUFError("array of arrays", self.pos)
            kept = []
            for i in range(n):
                value = self.value(item, version)
                if i < KEPT_ARRAY:
                    kept.append(value)
            return kept
        raise GGUFError(f"unknown metadata value type {kind}", self.pos - 4)
