"""Bytes after the end of a weights format's data (shared by the safetensors and GGUF scanners): sniffed,
and reported as hidden data, or as a payload when they are an executable, a pickle or an archive."""
from __future__ import annotations

from typing import Iterator

from ..sniff import Format, sniff_bytes
from .interface import Artifact, ScanContext

DANGEROUS = frozenset({Format.PICKLE, Format.EXECUTABLE, Format.ZIP, Format.TAR, Format.SEVENZIP, Format.GZIP,
                       Format.BZIP2, Format.XZ, Format.LZMA, Format.ZLIB, Format.NPY})
SNIFFED = 65536
"""Bytes of the trailing data that are sniffed."""


def findings(artifact: Artifact, ctx: ScanContext, offset: int, *, hidden: str, payload: str,
             after: str) -> Iterator:
    """One finding for the bytes from ``offset`` to the end of the file: rule ``payload`` when they sniff as
    a dangerous format, else rule ``hidden``; ``after`` says what they follow ("after the last tensor")."""
    extra = artifact.size - offset
    sniffed = sniff_bytes(bytes(artifact.buffer()[offset:offset + SNIFFED]), "")
    evidence = {"length": extra, "format": sniffed.format.value}
    if sniffed.format in DANGEROUS:
        yield ctx.finding(artifact, payload, f"{extra:,} bytes {after} are {sniffed.format.value} "
                          f"({sniffed.detail})", offset=offset, evidence=evidence)
    else:
        yield ctx.finding(artifact, hidden, f"{extra:,} bytes {after} belong to no tensor", offset=offset,
                          evidence=evidence, key="trailing")
