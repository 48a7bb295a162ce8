"""safetensors: the official loader's validation re-done strictly, plus what it does not look at (hidden bytes,
polyglots, metadata that carries code or links, sharded index files)."""
from __future__ import annotations

import os
from typing import Iterator

from .. import engine
from ..findings import Finding
from ..sniff import Format
from . import _text_checks as text_checks, _trailing as trailing
from .interface import Artifact, Option, ScanContext

BITS = {"BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F4": 4, "F6_E2M3": 6,
        "F6_E3M2": 6, "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "I64": 64,
        "U64": 64, "F64": 64, "C64": 64}
"""dtype -> bits per element, as the safetensors format defines them."""
_BYTE_DTYPES = {"U8", "I8", "BOOL"}
_MAGIC = {b"MZ": "a Windows executable", b"\x7fELF": "an ELF executable", b"\xcf\xfa\xed\xfe": "a Mach-O executable",
          b"PK\x03\x04": "a zip archive", b"\x80\x02": "a pickle", b"\x80\x03": "a pickle", b"\x80\x04": "a pickle",
          b"\x80\x05": "a pickle", b"#!": "a script"}


class SafetensorsScanner:
    name = "safetensors"
    formats = frozenset({Format.SAFETENSORS, Format.JSON, Format.BINARY})
    """JSON for sharded indexes; BINARY for a ``.safetensors`` file whose header is too broken to sniff."""
    options: dict[str, Option] = {}

    def scan(self, artifact: Artifact, ctx: ScanContext) -> Iterator[Finding | None]:
        if artifact.sniffed.format is Format.JSON:
            if artifact.name.endswith(".safetensors.index.json"):
                yield from _index(artifact, ctx)
            return
        if artifact.sniffed.format is Format.BINARY and not artifact.name.endswith(".safetensors"):
            return
        buf = artifact.buffer()
        facts = engine.safetensors_header(buf, artifact.size)
        if facts["error"]:
            rule = "safetensors-too-large" if facts["error"] == "too-large" else "safetensors-malformed-header"
            yield ctx.finding(artifact, rule, f"invalid safetensors header: {facts['detail']}", offset=0,
                              evidence={"error": facts["error"]})
            return
        for key in dict.fromkeys(facts["duplicates"]):
            yield ctx.finding(artifact, "safetensors-duplicate-key",
                              f"header key {key!r} appears more than once; the loader keeps the last one, other "
                              "tools may read the first", evidence={"key": key}, key=key)
        start = 8 + facts["header_length"]
        yield from _tensors(artifact, ctx, buf, facts["tensors"], start)
        yield from _metadata(artifact, ctx, facts["metadata"] or {})
        if artifact.sniffed.embedded:
            yield ctx.finding(artifact, "safetensors-polyglot",
                              "a zip end record sits in the file's tail: it is also a zip archive (its members are "
                              "scanned as such)", evidence={"embedded": "zip"})


def _tensors(artifact: Artifact, ctx: ScanContext, buf, tensors: list[dict], start: int) -> Iterator:
    data_size = artifact.size - start
    valid = []
    for t in tensors:
        if t["problem"]:
            yield ctx.finding(artifact, "safetensors-invalid-tensor-entry", f"tensor {t['name']!r}: {t['problem']}",
                              evidence={"tensor": t["name"]}, key=t["name"])
        elif t["dtype"] not in BITS:
            yield ctx.finding(artifact, "safetensors-unknown-dtype", f"tensor {t['name']!r} has unknown dtype "
                              f"{t['dtype']!r}; the loader refuses the file", evidence={"dtype": t["dtype"]},
                              key=t["name"])
        elif t["end"] < t["begin"]:
            yield ctx.finding(artifact, "safetensors-inverted-offsets", f"tensor {t['name']!r} ends ({t['end']}) "
                              f"before it begins ({t['begin']})", key=t["name"])
        elif t["end"] > data_size:
            yield ctx.finding(artifact, "safetensors-out-of-bounds", f"tensor {t['name']!r} ends at {t['end']:,}, "
                              f"beyond the {data_size:,} data bytes", key=t["name"])
        else:
            valid.append(t)
            numel = 1
            for d in t["shape"]:
                numel *= d
            bits = numel * BITS[t["dtype"]]
            if bits >= 1 << 64:
                yield ctx.finding(artifact, "safetensors-shape-overflow", f"tensor {t['name']!r}: shape "
                                  f"{t['shape']} overflows 64-bit sizes", key=t["name"])
            elif bits % 8 or bits // 8 != t["end"] - t["begin"]:
                yield ctx.finding(artifact, "safetensors-size-mismatch",
                                  f"tensor {t['name']!r}: {t['dtype']} {t['shape']} needs {bits / 8:g} bytes, its "
                                  f"span holds {t['end'] - t['begin']}", key=t["name"])
            elif t["dtype"] in _BYTE_DTYPES and t["end"] > t["begin"]:
                yield from _payload(artifact, ctx, buf, t, start)
    position = 0
    for t in sorted(valid, key=lambda t: (t["begin"], t["end"])):
        if t["begin"] < position:
            yield ctx.finding(artifact, "safetensors-overlapping-tensors",
                              f"tensor {t['name']!r} starts at {t['begin']:,}, inside the previous tensor "
                              f"(which ends at {position:,})", key=t["name"])
        elif t["begin"] > position:
            yield ctx.finding(artifact, "safetensors-hidden-data",
                              f"{t['begin'] - position:,} bytes before tensor {t['name']!r} belong to no tensor",
                              offset=start + position, key=f"gap@{position}")
        position = max(position, t["end"])
    if len(valid) == len(tensors) and position < data_size:
        yield from trailing.findings(artifact, ctx, start + position, hidden="safetensors-hidden-data",
                                     payload="safetensors-executable-trailing", after="after the last tensor")


def _payload(artifact: Artifact, ctx: ScanContext, buf, t: dict, start: int) -> Iterator:
    head = bytes(buf[start + t["begin"]:start + min(t["end"], t["begin"] + 8)])
    for magic, what in _MAGIC.items():
        if head.startswith(magic):
            yield ctx.finding(artifact, "safetensors-polyglot", f"byte tensor {t['name']!r} starts like {what}: "
                              "a payload stored as weights", offset=start + t["begin"],
                              evidence={"tensor": t["name"], "looks_like": what}, key=t["name"])
            return


def _metadata(artifact: Artifact, ctx: ScanContext, metadata: dict) -> Iterator:
    for key, value in metadata.items():
        text = value if isinstance(value, str) else repr(value)
        if key == "format" or (key.startswith("modelspec.") and text.startswith("data:image/")
                               and not text.startswith("data:image/svg")):
            continue
        kohya = key.startswith("ss_")
        shown = text[:120] + ("…" if len(text) > 120 else "")
        checks = [("safetensors-metadata-code", text_checks.CODE), ("safetensors-metadata-html", text_checks.HTML),
                  ("safetensors-metadata-url", text_checks.ACTIVE_URL)]
        if not kohya:
            checks += [("safetensors-metadata-url", text_checks.URL), ("safetensors-metadata-ip", text_checks.IP),
                       ("safetensors-metadata-path", text_checks.PATH)]
        for rule, pattern in checks:
            match = pattern.search(text)
            if match:
                yield ctx.finding(artifact, rule, f"metadata {key!r}: {match.group(0).strip()!r} in {shown!r}",
                                  snippet=shown, evidence={"key": key}, key=f"{rule}:{key}")
                break


def _index(artifact: Artifact, ctx: ScanContext) -> Iterator:
    import json
    try:
        data = json.loads(bytes(artifact.buffer()).decode("utf-8"))
        shards = set(data["weight_map"].values())
    except (ValueError, KeyError, TypeError, AttributeError):
        yield ctx.finding(artifact, "safetensors-malformed-header", "sharded index without a readable weight_map",
                          key="index")
        return
    folder = os.path.dirname(artifact.fs_path) if artifact.fs_path and artifact.depth == 0 else None
    for shard in sorted(s for s in shards if isinstance(s, str)):
        if any(p.search(shard) for p in (text_checks.ABSOLUTE, text_checks.SCHEME, text_checks.TRAVERSAL)):
            yield ctx.finding(artifact, "safetensors-index-path",
                              f"weight_map names shard {shard!r} outside the model folder", evidence={"shard": shard},
                              key=shard)
        elif folder is not None and not os.path.isfile(os.path.join(folder, shard)):
            yield ctx.finding(artifact, "safetensors-index-missing-shard", f"shard {shard!r} is not beside the index",
                              evidence={"shard": shard}, key=shard)


SCANNER = SafetensorsScanner()
