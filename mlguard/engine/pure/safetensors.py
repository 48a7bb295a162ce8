"""safetensors header facts (reference kernel): framing, strict JSON with duplicate keys, each tensor entry.

Reads only the 8-byte length and the header; never the tensor data.
"""
from __future__ import annotations

import json
import struct

MAX_HEADER = 100_000_000
"""The official loader's cap on the header length."""
MAX_TENSORS = 1_000_000
MAX_DEPTH = 64


class _Duplicates(dict):
    pass


def header_facts(data, file_size: int | None = None) -> dict:
    """Facts about the safetensors header at the start of ``data`` (a buffer of the file; only the header is
    read). ``file_size`` defaults to ``len(data)``.

    Returns ``{"header_length", "error", "detail", "duplicates", "metadata", "tensors"}``: ``error`` is None
    or one of ``short``, ``too-large``, ``beyond-file``, ``not-utf8``, ``not-json``, ``not-object``,
    ``too-deep``, ``too-many``; ``duplicates`` the keys seen twice (at any depth, the loader keeps the last);
    ``metadata`` the ``__metadata__`` object or None; ``tensors`` one dict per other key in file order with
    ``name``, ``dtype``, ``shape``, ``begin``, ``end`` (None where missing or of the wrong type) and
    ``problem`` (None, or what is wrong with the entry's structure).
    """
    size = len(data) if file_size is None else file_size
    facts = {"header_length": None, "error": None, "detail": None, "duplicates": [], "metadata": None,
             "tensors": []}
    if size < 8:
        return {**facts, "error": "short", "detail": f"{size} bytes, fewer than the 8 of the length field"}
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
    if _depth(text) > MAX_DEPTH:
        return {**facts, "error": "too-deep", "detail": f"header nested deeper than {MAX_DEPTH}"}
    duplicates: list[str] = []

    def pairs(items):
        seen = set()
        for key, _ in items:
            if key in seen:
                duplicates.append(key)
            seen.add(key)
        return dict(items)

    try:
        header = json.loads(text, object_pairs_hook=pairs, parse_constant=_reject)
    except (ValueError, RecursionError) as exc:
        return {**facts, "error": "not-json", "detail": f"header is not strict JSON: {exc}"}
    if not isinstance(header, dict):
        return {**facts, "error": "not-object", "detail": f"header is a JSON {type(header).__name__}, not an object"}
    if len(header) > MAX_TENSORS:
        return {**facts, "error": "too-many", "detail": f"{len(header):,} entries"}
    facts["duplicates"] = duplicates
    for name, entry in header.items():
        if name == "__metadata__":
            facts["metadata"] = entry if isinstance(entry, dict) else {"": entry}
            continue
        facts["tensors"].append(_tensor(name, entry))
    return facts


def _reject(constant: str):
    raise ValueError(f"{constant} is not JSON")


def _depth(text: str) -> int:
    """Deepest nesting of brackets outside strings (bounds json.loads' recursion)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


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
