"""GGUF (llama.cpp): a bounded header parse, and the chat templates it carries."""
from __future__ import annotations

from typing import Iterator

from ..engine.pure.gguf import header_facts
from ..findings import Finding
from ..sniff import Format
from . import _chat_template
from .interface import Artifact, Option, ScanContext

GGML_TYPES = 42
"""ggml tensor types 0..41 (F32 … the newest quantisations); a larger id is unknown to llama.cpp."""


class GGUFScanner:
    name = "gguf"
    formats = frozenset({Format.GGUF})
    options: dict[str, Option] = {}

    def scan(self, artifact: Artifact, ctx: ScanContext) -> Iterator[Finding | None]:
        facts = header_facts(artifact.buffer())
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
    names: set[str] = set()
    data_start = facts["data_start"]
    if data_start is not None:
        data_start += -data_start % alignment
    for t in facts["tensors"]:
        where = {"offset": t["at"], "key": t["name"]}
        if t["name"] in names:
            yield ctx.finding(artifact, "gguf-duplicate-tensor", f"tensor {t['name']!r} is declared twice", **where)
        names.add(t["name"])
        if t["type"] >= GGML_TYPES:
            yield ctx.finding(artifact, "gguf-malformed", f"tensor {t['name']!r} has unknown ggml type {t['type']}",
                              **where)
        elif t["offset"] % alignment or (data_start is not None and data_start + t["offset"] > artifact.size):
            yield ctx.finding(artifact, "gguf-malformed", f"tensor {t['name']!r} at data offset {t['offset']:,}: "
                              f"misaligned (alignment {alignment}) or past the end of the file", **where)


def template_findings(ctx: ScanContext, where, key: str, template, offset: int | None = None,
                      line: int | None = None) -> Iterator:
    """Findings for one chat template (shared with the Hugging Face config scanner)."""
    if not isinstance(template, str):
        return
    reached, error = _chat_template.findings(template)
    preview = template[:120] + ("…" if len(template) > 120 else "")
    if reached:
        yield ctx.finding(where, "chat-template-injection",
                          f"{key} reaches Python internals ({', '.join(reached)}): a sandbox escape when rendered",
                          offset=offset, line=line, snippet=preview, evidence={"key": key, "reached": reached},
                          key=key)
    elif error:
        yield ctx.finding(where, "chat-template-unparsable", f"{key} is not a valid Jinja2 template ({error})",
                          offset=offset, line=line, snippet=preview, evidence={"key": key}, key=key)


SCANNER = GGUFScanner()
