"""Containers: zip (incl. PyTorch, npz, Keras), tar and compressed streams. Members are sniffed and scanned.

Bounded in nesting depth, member count and decompressed bytes per top-level file; members whose head
sniffs as opaque binary (tensor storage) are not read further.
"""
from __future__ import annotations

import bz2
import gzip
import lzma
import tarfile
import zipfile
import zlib
from typing import BinaryIO, Iterator

from ..findings import Finding
from ..sniff import HEAD_SIZE, Format, sniff_bytes
from .interface import Artifact, Option, ScanContext

_COMPRESSED = {Format.GZIP: ".gz", Format.BZIP2: ".bz2", Format.XZ: ".xz", Format.LZMA: ".lzma", Format.ZLIB: ".z"}
_SKIP = frozenset({Format.BINARY, Format.EMPTY})
_ERRORS = (zipfile.BadZipFile, tarfile.TarError, zlib.error, lzma.LZMAError, EOFError, OSError, OverflowError,
           RuntimeError, NotImplementedError, ValueError)
"""What the standard library raises on corrupt archives: reported as ``archive-malformed``."""


class _ZlibReader:
    """A file-like ``read(n)`` over a zlib stream, decompressing only what is asked for."""

    def __init__(self, raw: BinaryIO):
        self._raw, self._z = raw, zlib.decompressobj()

    def read(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            chunk = self._z.unconsumed_tail or self._raw.read(1 << 16)
            if not chunk:
                break
            out += self._z.decompress(chunk, n - len(out))
            if self._z.eof:
                break
        return bytes(out)


class ArchiveScanner:
    name = "archive"
    formats = frozenset({Format.ZIP, Format.TAR, *_COMPRESSED})
    options = {
        "max_depth": Option("int", 5, "Containers nested deeper than this are not opened."),
        "max_members": Option("int", 10_000, "Members examined per archive."),
        "max_decompressed": Option("int", 4 << 30, "Bytes taken out of containers per scanned file."),
    }

    def scan(self, artifact: Artifact, ctx: ScanContext) -> Iterator[Finding | None]:
        opts = ctx.options(self)
        if artifact.depth >= opts["max_depth"]:
            yield ctx.finding(artifact, "archive-limit-exceeded",
                              f"containers nested more than {opts['max_depth']} deep; not opened",
                              evidence={"limit": "max_depth"})
            return
        fmt = artifact.sniffed.format
        try:
            if fmt is Format.ZIP:
                yield from self._zip(artifact, ctx, opts)
            elif fmt is Format.TAR:
                yield from self._tar(artifact, ctx, opts)
            else:
                yield from self._compressed(artifact, ctx, opts)
        except _ERRORS as exc:
            yield ctx.finding(artifact, "archive-malformed", f"{fmt.value} cannot be read: {exc}",
                              evidence={"format": fmt.value, "error": type(exc).__name__})

    def _zip(self, artifact: Artifact, ctx: ScanContext, opts) -> Iterator[Finding | None]:
        with zipfile.ZipFile(artifact.stream()) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
            yield from self._too_many(artifact, ctx, len(infos), opts)
            for info in infos[:opts["max_members"]]:
                try:
                    with zf.open(info) as member:
                        yield from self._member(artifact, ctx, info.filename, member, opts)
                except _ERRORS as exc:
                    yield ctx.finding(artifact, "archive-malformed", f"member {info.filename} cannot be read: {exc}",
                                      evidence={"member": info.filename, "error": type(exc).__name__},
                                      key=info.filename)

    def _tar(self, artifact: Artifact, ctx: ScanContext, opts) -> Iterator[Finding | None]:
        with tarfile.open(fileobj=artifact.stream(), mode="r:") as tf:
            count = 0
            for info in tf:
                if not info.isfile():
                    continue
                count += 1
                if count > opts["max_members"]:
                    yield from self._too_many(artifact, ctx, count, opts)
                    return
                member = tf.extractfile(info)
                if member is not None:
                    yield from self._member(artifact, ctx, info.name, member, opts)

    def _compressed(self, artifact: Artifact, ctx: ScanContext, opts) -> Iterator[Finding | None]:
        fmt, raw = artifact.sniffed.format, artifact.stream()
        suffix = _COMPRESSED[fmt]
        name = artifact.name[:-len(suffix)] if artifact.name.lower().endswith(suffix) else artifact.name
        if fmt is Format.GZIP:
            reader = gzip.GzipFile(fileobj=raw)
        elif fmt is Format.BZIP2:
            reader = bz2.BZ2File(raw)
        elif fmt is Format.ZLIB:
            reader = _ZlibReader(raw)
        else:
            reader = lzma.LZMAFile(raw, format=lzma.FORMAT_XZ if fmt is Format.XZ else lzma.FORMAT_ALONE)
        yield from self._member(artifact, ctx, name or "data", reader, opts)

    def _too_many(self, artifact: Artifact, ctx: ScanContext, count: int, opts) -> Iterator[Finding | None]:
        if count > opts["max_members"]:
            yield ctx.finding(artifact, "archive-limit-exceeded",
                              f"more than {opts['max_members']} members; only the first {opts['max_members']} were examined",
                              evidence={"limit": "max_members", "members": count})

    def _member(self, parent: Artifact, ctx: ScanContext, name: str, reader, opts) -> Iterator[Finding | None]:
        """Sniff a member from its head; read and scan the rest only when some scanner can use it."""
        budget = opts["max_decompressed"] - ctx.decompressed_bytes
        member = f"{parent.member}!{name}" if parent.member else name
        if budget <= 0:
            yield ctx.finding(parent, "archive-limit-exceeded",
                              f"{member}: not examined, {opts['max_decompressed']} decompressed bytes already read",
                              evidence={"limit": "max_decompressed", "member": member}, key=member)
            return
        head = reader.read(min(HEAD_SIZE, budget))
        ctx.decompressed_bytes += len(head)
        if sniff_bytes(head, name).format in _SKIP:
            return
        rest = reader.read(max(budget - len(head), 0) + 1)
        data = head + rest
        if len(data) > budget:
            data = data[:budget]
            yield ctx.finding(parent, "archive-limit-exceeded",
                              f"{member}: decompressed data exceeds {opts['max_decompressed']} bytes; only the first part was scanned",
                              evidence={"limit": "max_decompressed", "member": member}, key=member)
        ctx.decompressed_bytes += len(data) - len(head)
        child = Artifact(parent.path, sniff_bytes(data, name), len(data), data=data, member=member,
                         depth=parent.depth + 1)
        yield from ctx.scan_nested(child)


SCANNER = ArchiveScanner()
