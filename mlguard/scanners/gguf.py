"""GGUF (llama.cpp): a bounded header parse, and the chat templates it carries."""
from __future__ import annotations

from typing import Iterator

from .. import engine
from ..findings import Finding
from ..sniff import Format
from . import _trailing as trailing
from ._chat_template import template_findings
from .interface import Artifact, Option, ScanContext

GGML_BLOCKS = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
               9: (32, 40), 10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210),
               15: (256, 292), 16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18),
               21: (256, 110), 22: (256, 82), 23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8),
               28: (1, 8), 29: (256, 56), 30: (1, 2), 34: (256, 54), 35: (256, 66), 39: (32, 17), 40: (64, 36),
               41: (128, 18)}
"""ggml tensor type -> (elements per block, bytes per block), as ggml's type traits define them (the ids
missing here were removed from ggml: llama.cpp refuses them)."""

class GGUFScanner:
    name = "gguf"
    formats = frozenset({Format.GGUF})
    options: dict[str, Option] = {}

    def scan(self, artifact: Artifact, ctx: ScanContext) -> Iterator[Finding | None]:
        facts = engine.gguf_header(artifact.buffer())
        if facts["error"]:
            yield ctx.finding(artifact, "gguf-malformed", f"invalid GGUF header: {facts['error']}",
                              offset=facts["error_offset"], evidence={"version": facts["version"]})
        if facts["version"] == 1:
            yield ctx.finding(artifact, "gguf-old-version", "GGUF version 1 (2023): current readers refuse it")
        seen: set[str] = set()
        alignment = 32
        for key, kind, value, offset in facts["metadata"]:
            if key in seen:
                yield ctx.finding(artifact, "gguf-duplicate-key", f"metadata key {key!r} appears more than once; "
                                  "readers disagree on which value wins", offset=offset, key=key)
            seen.add(key)
            if key == "general.alignment":
                if not isinstance(value, int) or value <= 0 or value & (value - 1):
                    yield ctx.finding(artifact, "gguf-malformed", f"general.alignment is {value!r}, not a power of "
                                      "two", offset=offset, key="alignment")
                else:
                    alignment = value
            if key == "tokenizer.chat_template" or key.startswith("tokenizer.chat_template."):
                yield from template_findings(ctx, artifact, key, value, offset)
        yield from _tensors(artifact, ctx, facts, alignment)


def _tensors(artifact: Artifact, ctx: ScanContext, facts: dict, alignment: int) -> Iterator:
    """Each tensor's type, shape and place as llama.cpp checks them: data laid out in declaration order, each
    tensor starting where the previous one's padded bytes end; then any bytes after the last tensor."""
    names: set[str] = set()
    expected = end = 0   # where the next tensor must start / the last one ends, relative to the data section
    for t in facts["tensors"]:
        where = {"offset": t["at"], "key": t["name"]}
        if t["name"] in names:
            yield ctx.finding(artifact, "gguf-duplicate-tensor", f"tensor {t['name']!r} is declared twice", **where)
        names.add(t["name"])
        problem, size = _layout(t, expected, alignment)
        if problem:
            yield ctx.finding(artifact, "gguf-malformed", f"tensor {t['name']!r}: {problem}", **where)
            return   # the places of the tensors after it are undefined
        expected = t["offset"] + size + -size % alignment
        end = t["offset"] + size
    if facts["data_start"] is None or facts["error"]:
        return
    data_start = facts["data_start"] + -facts["data_start"] % alignment
    if facts["tensors"] and data_start + end > artifact.size:
        yield ctx.finding(artifact, "gguf-malformed", f"the tensor data needs {data_start + end:,} bytes, the file "
                          f"has {artifact.size:,}", offset=facts["tensors"][-1]["at"], key="truncated")
    elif data_start + expected < artifact.size:
        yield from trailing.findings(artifact, ctx, data_start + expected, hidden="gguf-hidden-data",
                                     payload="gguf-executable-trailing", after="after the last tensor")


def _layout(t: dict, expected: int, alignment: int) -> tuple[str | None, int]:
    """(what llama.cpp would refuse about tensor ``t`` or None, its size in bytes)."""
    if t["type"] not in GGML_BLOCKS:
        return f"unknown ggml type {t['type']}", 0
    block, block_bytes = GGML_BLOCKS[t["type"]]
    numel = 1
    for d in t["dims"]:
        numel *= d
    if any(d >= 1 << 63 for d in t["dims"]) or numel >= 1 << 63:
        return f"shape {t['dims']} overflows 64-bit sizes", 0
    if t["dims"] and t["dims"][0] % block:
        return f"first dimension {t['dims'][0]} is not a multiple of the type's block of {block}", 0
    if t["offset"] != expected:
        return (f"data offset {t['offset']:,}, but the data of the tensors before it ends (aligned to "
                f"{alignment}) at {expected:,}"), 0
    return None, numel // block * block_bytes


SCANNER = GGUFScanner()
