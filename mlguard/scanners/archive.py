"""Containers: zip (PyTorch, TorchScript, npz, Keras, ...), tar, 7z and compressed streams, and
zips embedded in files of other formats (polyglots). Members are sniffed by content, whatever
their names, and scanned.

Zips are read with the zip kernel (:func:`mlguard.engine.zip_facts`), never with :mod:`zipfile`:
every member's data is located through its *local* header, as PyTorch's reader does, and read again
with the local header's own method and size when they disagree with the central directory; every
duplicate is scanned; local headers no directory entry points to are scanned too. Stored and
deflated members are decompressed here (bounded), their CRC checked when read whole. What readers
would see differently is reported as ``archive-inconsistent`` with ``evidence["kind"]``:
``name-mismatch``, ``method-mismatch``, ``size-mismatch``, ``crc-mismatch``, ``flags``,
``duplicate-name``, ``overlap``, ``local-only-entry``, ``prepended-bytes``, ``trailing-bytes``,
``entry-count`` or ``polyglot``.

PyTorch checkpoints: only members torch deserializes, or whose bytes look like a container or
a pickle, are read. Tensor storages under ``<dir>/data/`` are judged from the first bytes the
kernel returns; when a checkpoint holds many of them (``skim_tensors``) they are checked through
the central directory alone and their bytes are never touched.

Bounded in nesting depth, members per archive and decompressed bytes per top-level file.
"""
from __future__ import annotations

import functools
import re
import zlib
from typing import BinaryIO, Iterator, NamedTuple

from .. import engine
from ..findings import Finding
from ..sniff import (HEAD_SIZE, ZIP_SKIM_DIR, ZIP_SKIM_MIN, Embedded, Format, _zip_flavour,
                     sniff_bytes)
from .interface import Artifact, Option, ScanContext

_COMPRESSED = {Format.GZIP: ".gz", Format.BZIP2: ".bz2", Format.XZ: ".xz", Format.LZMA: ".lzma", Format.ZLIB: ".z"}
_CONTAINERS = frozenset({Format.ZIP, Format.TAR, Format.SEVENZIP, *_COMPRESSED})
_SKIP = frozenset({Format.BINARY, Format.EMPTY})


@functools.cache
def _errors() -> tuple[type[BaseException], ...]:
    """What the standard library (and py7zr) raise on corrupt archives: reported as ``archive-malformed``.
    (The tar and lzma modules, like gzip and bz2, are imported only for an archive that needs them.)"""
    import lzma  # noqa: PLC0415
    import tarfile  # noqa: PLC0415
    return (tarfile.TarError, zlib.error, lzma.LZMAError, EOFError, OSError, OverflowError,
            RuntimeError, NotImplementedError, ValueError, IndexError, KeyError, MemoryError)

_STORED, _DEFLATED = 0, 8
_METHODS = {0: "stored", 1: "shrunk", 6: "imploded", 8: "deflate", 9: "deflate64", 12: "bzip2", 14: "lzma",
            20: "zstd (old id)", 93: "zstd", 95: "xz", 96: "jpeg", 97: "wavpack", 98: "ppmd", 99: "aes"}
_NORMAL_FLAGS = 0x0002 | 0x0004 | 0x0008 | 0x0800
"""Deflate options, data descriptor, UTF-8 names: what writers set. Bit 0 (encryption) is reported
as unscannable; any other bit (patched data, strong encryption, masked headers, reserved) is odd."""
_MAX_PER_KIND = 20
"""Member-level inconsistencies reported one by one per kind; the rest are summed up in one finding."""

_ZIP_ERRORS = {
    "no-end-record": "no end-of-central-directory record: zipfile and torch refuse it, streaming readers do not",
    "comment-truncated": "the archive comment runs past the end of the file",
    "zip64-record-missing": "a zip64 locator points to no zip64 end record",
    "multi-disk": "the end record describes a multi-disk archive",
    "directory-not-found": "the central directory is not where the end record says",
    "directory-truncated": "the central directory runs past the end of the file",
    "directory-corrupt": "a central directory entry is corrupt; entries after it are unreadable",
}
_MEMBER_ERRORS = {
    "name-not-utf8": "name flagged UTF-8 is not UTF-8",
    "extra-corrupt": "corrupt extra field in the central directory",
    "local-extra-corrupt": "corrupt extra field in the local header",
    "zip64-extra-bad": "zip64 sizes or offset missing from the extra field",
    "local-header-missing": "no local header where the directory points",
    "local-header-truncated": "local header cut by the end of the file",
    "data-out-of-range": "data runs into the central directory or past the end of the file",
    "descriptor-missing": "data descriptor missing",
    "size-unknown": "size unknown (data descriptor without a directory entry)",
}


class _Where(NamedTuple):
    """Where a member-level finding points: the file and the member path."""

    path: str
    member: str | None


class _ZlibReader:
    """A file-like ``read(n)`` over a zlib (or raw deflate) stream, decompressing only what is asked for."""

    def __init__(self, raw: BinaryIO, wbits: int = zlib.MAX_WBITS):
        self._raw, self._z = raw, zlib.decompressobj(wbits)

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


def _join(parent: Artifact, name: str) -> str:
    return f"{parent.member}!{name}" if parent.member else name


# PyTorch's own records next to data.pkl and the content torch writes in them (numbers, a byte
# order). One in that form holds nothing any scanner looks for, so it is not scanned further (its
# CRC and sizes are still checked); any other content is scanned like every member.
_TORCH_RECORDS = ("version", ".format_version", ".storage_alignment", "byteorder", ".data/version",
                  ".data/serialization_id")
_TORCH_RECORD_CONTENT = re.compile(rb"(?:[0-9]{1,64}|little|big)\n?")


def _torch_layout(facts: dict) -> set[str]:
    """When the zip is a PyTorch (or TorchScript) archive, the folders holding a ``data.pkl`` (``""`` for
    the root; ``<prefix>data/`` holds tensor storages); else none."""
    names = [m["name"] for m in facts["members"] if m["central"]]
    if _zip_flavour(names, [s["dir"] for s in facts["skimmed"]]) not in ("pytorch", "torchscript"):
        return set()
    return {n[:-len("data.pkl")] for n in names if n == "data.pkl" or n.endswith("/data.pkl")}


def _strong_magic(head: bytes, size: int) -> bool:
    """A head that is certainly not float data: a container magic or a framed/typical pickle start.

    Used for tensor storages, whose first bytes are arbitrary numbers: one- or two-byte magics
    (protocol 0/1 pickles, zlib) would match random tensors too often."""
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06") or head.startswith((b"\x93NUMPY", b"\xfd7zXZ\x00",
                                                                       b"7z\xbc\xaf\x27\x1c")):
        return True
    if head.startswith(b"\x1f\x8b\x08") and len(head) > 3 and head[3] < 0x20:
        return True
    if head.startswith(b"BZh") and head[4:10] == b"1AY&SY":
        return True
    if len(head) >= 3 and head[0] == 0x80:
        if head[1] in (2, 3):
            return head[2] in b"}]c("
        if head[1] in (4, 5) and head[2] == 0x95 and len(head) >= 11:
            return 0 < int.from_bytes(head[3:11], "little") <= size - 11
    return False


class ArchiveScanner:
    name = "archive"
    formats = frozenset(Format)
    """Containers, plus any format: a file of another format may carry an embedded zip
    (``Sniffed.embedded``); others are passed over at once."""
    options = {
        "max_depth": Option("int", 5, "Containers nested deeper than this are not opened."),
        "max_members": Option("int", 10_000, "Members examined per archive."),
        "max_decompressed": Option("int", 4 << 30, "Bytes taken out of containers per scanned file."),
        "skim_tensors": Option("bool", True, "In PyTorch zips with many tensor storages (<dir>/data/*), "
                               "check those through the central directory only and never touch their bytes "
                               "(torch never deserializes them); false: also read each one's local header "
                               "and first bytes."),
    }

    def scan(self, artifact: Artifact, ctx: ScanContext) -> Iterator[Finding | None]:
        sniffed = artifact.sniffed
        fmt = sniffed.format
        embedded = [e for e in sniffed.embedded if isinstance(e, Embedded) and e.format is Format.ZIP]
        if fmt not in _CONTAINERS and not embedded:
            return
        opts = ctx.options(self)
        if artifact.depth >= opts["max_depth"]:
            yield ctx.finding(artifact, "archive-limit-exceeded",
                              f"containers nested more than {opts['max_depth']} deep; not opened",
                              evidence={"limit": "max_depth"})
            return
        try:
            if fmt is Format.ZIP:
                yield from _ZipScan(artifact, ctx, opts).run()
            elif fmt is Format.TAR:
                yield from self._tar(artifact, ctx, opts)
            elif fmt is Format.SEVENZIP:
                yield from self._sevenzip(artifact, ctx, opts)
            elif fmt in _COMPRESSED:
                yield from self._compressed(artifact, ctx, opts)
        except _errors() as exc:
            yield ctx.finding(artifact, "archive-malformed", f"{fmt.value} cannot be read: {exc}",
                              evidence={"format": fmt.value, "error": type(exc).__name__})
        for emb in embedded:
            try:
                yield from _ZipScan(artifact, ctx, opts, host=emb).run()
            except _errors() as exc:
                yield ctx.finding(artifact, "archive-malformed", f"embedded zip cannot be read: {exc}",
                                  evidence={"format": "zip", "error": type(exc).__name__}, key="embedded")

    # ------------------------------------------------------------------ tar, 7z, compressed streams

    def _tar(self, artifact: Artifact, ctx: ScanContext, opts) -> Iterator[Finding | None]:
        import tarfile  # noqa: PLC0415 - see _errors()
        with tarfile.open(fileobj=artifact.stream(), mode="r:") as tf:
            count = 0
            for info in tf:
                if not info.isfile():
                    continue
                count += 1
                if count > opts["max_members"]:
                    yield from _too_many(artifact, ctx, count, opts)
                    return
                member = tf.extractfile(info)
                if member is not None:
                    yield from _member(artifact, ctx, info.name, member, opts)

    def _sevenzip(self, artifact: Artifact, ctx: ScanContext, opts) -> Iterator[Finding | None]:
        try:
            import py7zr
            import py7zr.io
        except ImportError:
            yield ctx.finding(artifact, "archive-unscannable",
                              "7z archive not examined: the optional py7zr package is not installed "
                              "(pip install 'ml-guard[archives]')", evidence={"format": "7z", "reason": "py7zr missing"})
            return
        budget = opts["max_decompressed"] - ctx.decompressed_bytes
        if budget <= 0:
            yield ctx.finding(artifact, "archive-limit-exceeded",
                              f"not examined, {opts['max_decompressed']} decompressed bytes already read",
                              evidence={"limit": "max_decompressed"})
            return
        try:
            with py7zr.SevenZipFile(artifact.stream(), mode="r", max_extract_size=budget) as z:
                if z.needs_password():
                    yield ctx.finding(artifact, "archive-unscannable", "7z archive is encrypted; its content was not checked",
                                      evidence={"format": "7z", "reason": "encrypted"})
                    return
                infos = [i for i in z.list() if not i.is_directory]
                yield from _too_many(artifact, ctx, len(infos), opts)
                targets = [i.filename for i in infos[:opts["max_members"]]]
                factory = py7zr.io.BytesIOFactory(budget)
                z.extract(targets=targets, factory=factory)
        except py7zr.exceptions.PasswordRequired:
            yield ctx.finding(artifact, "archive-unscannable", "7z archive is encrypted; its content was not checked",
                              evidence={"format": "7z", "reason": "encrypted"})
            return
        except py7zr.exceptions.DecompressionBombError:
            yield ctx.finding(artifact, "archive-limit-exceeded",
                              f"7z content exceeds {opts['max_decompressed']} decompressed bytes; not examined",
                              evidence={"limit": "max_decompressed"})
            return
        except py7zr.exceptions.UnsupportedCompressionMethodError as exc:
            yield ctx.finding(artifact, "archive-unscannable", f"7z archive uses an unsupported method: {exc}",
                              evidence={"format": "7z", "reason": "method"})
            return
        except (py7zr.exceptions.ArchiveError, *_errors()) as exc:
            yield ctx.finding(artifact, "archive-malformed", f"7z cannot be read: {exc}",
                              evidence={"format": "7z", "error": type(exc).__name__})
            return
        for name in targets:
            product = factory.products.get(name)
            if product is None:
                continue
            product.seek(0)
            yield from _member(artifact, ctx, name, product, opts)

    def _compressed(self, artifact: Artifact, ctx: ScanContext, opts) -> Iterator[Finding | None]:
        sniffed, raw = artifact.sniffed, artifact.stream()
        fmt = sniffed.format
        suffix = _COMPRESSED[fmt]
        name = artifact.name[:-len(suffix)] if artifact.name.lower().endswith(suffix) else artifact.name
        if fmt is Format.GZIP:
            import gzip  # noqa: PLC0415 - see _errors()
            reader = gzip.GzipFile(fileobj=raw)
        elif fmt is Format.BZIP2:
            import bz2  # noqa: PLC0415
            reader = bz2.BZ2File(raw)
        elif fmt is Format.ZLIB:
            raw.seek(sniffed.offset)  # joblib's old z-files: the stream follows a "ZF" header
            reader = _ZlibReader(raw)
        else:
            import lzma  # noqa: PLC0415
            reader = lzma.LZMAFile(raw, format=lzma.FORMAT_XZ if fmt is Format.XZ else lzma.FORMAT_ALONE)
        yield from _member(artifact, ctx, name or "data", reader, opts)


# ---------------------------------------------------------------------------------------- zip

class _ZipScan:
    """One zip (or a zip embedded in another format's file), read through the zip kernel."""

    def __init__(self, artifact: Artifact, ctx: ScanContext, opts, host: Embedded | None = None):
        self.artifact, self.ctx, self.opts, self.host = artifact, ctx, opts, host
        self.reported: dict[str, int] = {}
        self.torch_records: frozenset[str] = frozenset()

    def run(self) -> Iterator[Finding | None]:
        artifact, ctx = self.artifact, self.ctx
        buf = artifact.buffer()
        facts, prefixes = self._facts(buf)
        members = facts["members"]
        torch_dirs = tuple(p + "data/" for p in prefixes)
        self.torch_records = frozenset(p + r for p in prefixes for r in _TORCH_RECORDS)
        yield from self._archive_findings(facts)
        examined = 0
        seen: dict[str, int] = {}
        for m in members:
            examined += 1
            if examined > self.opts["max_members"]:
                yield from _too_many(artifact, ctx, len(members), self.opts)
                break
            name = m["name"]
            seen[name] = seen.get(name, 0) + 1
            label = name if seen[name] == 1 else f"{name}[{seen[name]}]"
            path = _join(artifact, label)
            yield from self._member_findings(m, path, has_directory=facts["cd_start"] is not None)
            if m["encrypted"] or m["data_offset"] is None:
                continue
            variants = [(m["method"], m["compressed_size"], m["uncompressed_size"], m["crc32"], path)]
            local = m["local"]
            if m["central"] and local is not None:
                # a streaming reader goes by the local header: its method and size (zeros in a
                # header with a data descriptor mean "see the descriptor", i.e. the directory's)
                lazy = local["flags"] & 0x08 and local["compressed_size"] == 0
                lsize = m["compressed_size"] if lazy else local["compressed_size"]
                if local["method"] != m["method"] or lsize != m["compressed_size"]:
                    variants.append((local["method"], lsize,
                                     m["uncompressed_size"] if lazy else local["uncompressed_size"],
                                     m["crc32"] if lazy else local["crc32"], path + "[local-header]"))
            if not m["central"] and "size-unknown" in m["errors"] and m["method"] == _DEFLATED:
                # a local-only entry whose size is in a descriptor after the data: deflate streams
                # end by themselves, so inflate up to the end of the file
                variants = [(_DEFLATED, len(buf) - m["data_offset"], None, None, path)]
            # a tensor storage of a torch archive, and nothing odd about it (an odd member is read
            # whatever it looks like)
            is_tensor = (bool(torch_dirs) and m["central"] and name.startswith(torch_dirs) and not m["mismatch"]
                         and not m["duplicate"] and not m["overlap"] and not m["errors"])
            for method, csize, usize, crc, where in variants:
                try:
                    yield from self._read_member(buf, m, method, csize, usize, crc, where, is_tensor)
                except _errors() as exc:
                    yield ctx.finding(_Where(artifact.path, where), "archive-malformed",
                                      f"member {name!r} cannot be read: {exc}",
                                      evidence={"format": "zip", "error": type(exc).__name__}, key=f"read:{where}")
        yield from self._summary()

    # -------------------------------------------------------------- facts

    def _facts(self, buf) -> tuple[dict, set[str]]:
        """The zip's facts (those of the sniffer when it read this zip) and, for a PyTorch archive, the
        folders holding a data.pkl. Tensor directories stay skimmed only when they are the storages of
        such a folder."""
        skim = self.opts["skim_tensors"]
        facts = self.artifact.sniffed.facts if self.host is None else None
        if facts is None or facts.get("size") != len(buf) or (facts["skimmed"] and not skim):
            facts = engine.zip_facts(buf, skim_dir=ZIP_SKIM_DIR if skim else None, skim_min=ZIP_SKIM_MIN)
        prefixes = _torch_layout(facts)
        if not {s["dir"] for s in facts["skimmed"]} <= {p + "data/" for p in prefixes}:
            facts = engine.zip_facts(buf)  # not tensor storages of a torch archive: read them all
            prefixes = _torch_layout(facts)
        return facts, prefixes

    # -------------------------------------------------------------- findings

    def _inconsistent(self, where, kind: str, message: str, key: str, offset: int | None = None,
                      **evidence) -> Iterator[Finding | None]:
        count = self.reported.get(kind, 0) + 1
        self.reported[kind] = count
        if count > _MAX_PER_KIND:
            return
        yield self.ctx.finding(where, "archive-inconsistent", message, offset=offset,
                               evidence={"kind": kind, **evidence}, key=f"{kind}:{key}")

    def _summary(self) -> Iterator[Finding | None]:
        for kind, count in self.reported.items():
            if count > _MAX_PER_KIND:
                yield self.ctx.finding(self.artifact, "archive-inconsistent",
                                       f"{count - _MAX_PER_KIND} more members with the same problem ({kind})",
                                       evidence={"kind": kind, "more": count - _MAX_PER_KIND},
                                       key=f"{kind}:more")

    def _archive_findings(self, facts: dict) -> Iterator[Finding | None]:
        artifact, ctx = self.artifact, self.ctx
        for e in facts["errors"]:
            code = e["code"]
            yield ctx.finding(artifact, "archive-malformed", f"zip: {_ZIP_ERRORS.get(code, code)}", offset=e["offset"],
                              evidence={"format": "zip", "error": code}, key=f"zip:{code}")
        if facts["limit"]:
            yield ctx.finding(artifact, "archive-limit-exceeded",
                              f"zip directory has more than the kernel's {facts['limit']} limit; the rest was not read",
                              evidence={"limit": facts["limit"], "entries": facts["entries_found"]}, key="zip-limit")
        start = facts["start"]
        if self.host is not None:
            what = artifact.sniffed.format.value
            yield from self._inconsistent(
                artifact, "polyglot",
                f"a zip archive is embedded in this {what} file (from offset {start if start is not None else '?'}); "
                "zip readers and the format's own loader see different content", "zip", offset=start,
                format=what, start=start, end_record=self.host.offset)
        elif start:
            yield from self._inconsistent(
                artifact, "prepended-bytes", f"{start} bytes precede the zip archive (readers that expect it at "
                "offset 0 see something else)", "prepended", offset=0, length=start)
        if facts["trailing"] and facts["eocd"] is not None:
            end = facts["eocd"]["offset"] + 22 + facts["eocd"]["comment_length"]
            yield from self._inconsistent(
                artifact, "trailing-bytes", f"{facts['trailing']} bytes follow the zip's end record",
                "trailing", offset=end, length=facts["trailing"])
        declared, found = facts["entries_declared"], facts["entries_found"]
        codes = {e["code"] for e in facts["errors"]}
        if (declared is not None and declared != found and not facts["limit"]
                and "directory-corrupt" not in codes and "directory-not-found" not in codes):
            yield from self._inconsistent(
                artifact, "entry-count", f"the end record declares {declared} entries, the directory holds {found}",
                "entries", offset=facts["eocd"]["offset"], declared=declared, found=found)

    def _member_findings(self, m: dict, path: str, has_directory: bool) -> Iterator[Finding | None]:
        ctx = self.ctx
        where = _Where(self.artifact.path, path)
        hdr = m["header_offset"]
        # (a deflated entry of unknown size is read to the end of its stream: not an error here)
        errors = [c for c in m["errors"] if not (c == "size-unknown" and m["method"] == _DEFLATED)]
        if errors:
            text = "; ".join(_MEMBER_ERRORS.get(c, c) for c in errors)
            yield ctx.finding(where, "archive-malformed", f"member {m['name']!r}: {text}",
                              evidence={"format": "zip", "errors": errors, "header_offset": hdr},
                              key=f"member:{path}")
        if m["encrypted"]:
            yield ctx.finding(where, "archive-unscannable", f"member {m['name']!r} is encrypted; its content was not checked",
                              evidence={"reason": "encrypted", "header_offset": hdr}, key=f"encrypted:{path}")
        methods = {m["method"]} | ({m["local"]["method"]} if m["local"] else set())
        for method in sorted(methods - {_STORED, _DEFLATED}):
            yield ctx.finding(where, "archive-unscannable",
                              f"member {m['name']!r} uses compression method {method} "
                              f"({_METHODS.get(method, 'unknown')}), which ML Guard does not decompress",
                              evidence={"reason": "method", "method": method, "header_offset": hdr},
                              key=f"method{method}:{path}")
        if not m["central"] and has_directory:
            yield from self._inconsistent(
                where, "local-only-entry", f"a local header for {m['name']!r} sits where no directory entry points: "
                "streaming readers extract it, zipfile and torch do not", path, header_offset=hdr)
        if m["duplicate"]:
            how = "the same name" if m["duplicate"] == "exact" else "the same name up to case (torch ignores case)"
            yield from self._inconsistent(
                where, "duplicate-name", f"several members have {how}: {m['name']!r}; readers pick different ones",
                path, case=m["duplicate"] == "case", header_offset=hdr)
        if m["overlap"]:
            yield from self._inconsistent(where, "overlap", f"member {m['name']!r} overlaps another member's bytes",
                                          path, header_offset=hdr)
        local = m["local"]
        mismatch = m["mismatch"]
        if "name" in mismatch:
            yield from self._inconsistent(
                where, "name-mismatch", f"the local header names {local['name']!r}, the directory {m['name']!r}",
                path, central=m["name"], local=local["name"], header_offset=hdr)
        if "method" in mismatch:
            yield from self._inconsistent(
                where, "method-mismatch", f"{m['name']!r}: local header method {local['method']}, directory {m['method']}",
                path, central=m["method"], local=local["method"], header_offset=hdr)
        sizes = [k for k in mismatch if k.endswith("_size")]
        if sizes:
            yield from self._inconsistent(
                where, "size-mismatch", f"{m['name']!r}: sizes disagree ({', '.join(sizes)})", path,
                fields=sizes, header_offset=hdr)
        crcs = [k for k in mismatch if k.endswith("crc32")]
        if crcs:
            yield from self._inconsistent(
                where, "crc-mismatch", f"{m['name']!r}: declared CRCs disagree ({', '.join(crcs)})", f"{path}:declared",
                fields=crcs, header_offset=hdr)
        flags = m["flags"] | (local["flags"] if local else 0)
        odd = flags & ~(_NORMAL_FLAGS | 0x0001)
        if "flags" in mismatch or odd:
            why = []
            if odd:
                why.append(f"unusual bits 0x{odd:04x}")
            if "flags" in mismatch:
                why.append(f"local 0x{local['flags']:04x} vs directory 0x{m['flags']:04x}")
            yield from self._inconsistent(where, "flags", f"{m['name']!r}: flags {'; '.join(why)}", path,
                                          flags=m["flags"], local_flags=local["flags"] if local else None,
                                          header_offset=hdr)

    # -------------------------------------------------------------- reading

    def _read_member(self, buf, m: dict, method: int, csize: int, usize: int, crc: int, path: str,
                     is_tensor: bool) -> Iterator[Finding | None]:
        """Sniff one member (a stored one in place, a deflated one from its first bytes); read it
        whole, check its CRC and scan it when some scanner can use it."""
        if method not in (_STORED, _DEFLATED):
            return
        ctx, opts = self.ctx, self.opts
        start = m["data_offset"]
        end = min(start + csize, len(buf))
        leaf = m["name"].rsplit("/", 1)[-1]
        if is_tensor and method == _STORED and not _strong_magic(m["head"] or b"", csize):
            return  # a tensor storage: torch copies its bytes, never deserializes them
        where = _Where(self.artifact.path, path)
        budget = opts["max_decompressed"] - ctx.decompressed_bytes
        if budget <= 0:
            yield ctx.finding(where, "archive-limit-exceeded",
                              f"{path}: not examined, {opts['max_decompressed']} decompressed bytes already read",
                              evidence={"limit": "max_decompressed"}, key=f"budget:{path}")
            return
        view = memoryview(buf)
        data = None
        record = False
        try:
            if method == _STORED:
                data = view[start:max(start, end)]
                record = m["name"] in self.torch_records and _TORCH_RECORD_CONTENT.fullmatch(data) is not None
                sniffed = None if record else sniff_bytes(data, leaf)  # head and tail only: nothing is copied
            else:
                head, _, error = _inflate(view, start, end, min(HEAD_SIZE, budget))
                sniffed = sniff_bytes(head, leaf)
                if error and not head:
                    yield self._inflate_error(where, m, path, error)
                    return
            if sniffed is not None and sniffed.format in _SKIP and not sniffed.embedded:
                return
            complete, error = True, None
            if method == _DEFLATED:
                data, complete, error = _inflate(view, start, end, budget + 1)
                if error:
                    yield self._inflate_error(where, m, path, error)
            ctx.decompressed_bytes += min(len(data), budget)
            if len(data) > budget:
                data, complete = data[:budget], False
                yield ctx.finding(where, "archive-limit-exceeded",
                                  f"{path}: decompressed data exceeds {opts['max_decompressed']} bytes; "
                                  "only the first part was scanned",
                                  evidence={"limit": "max_decompressed"}, key=f"budget:{path}")
            if complete and not error and end - start == csize and crc is not None:
                # (a member cut by the end of the file was reported by the kernel: data-out-of-range)
                actual = engine.crc32(data)
                if actual != crc:
                    yield from self._inconsistent(
                        where, "crc-mismatch", f"{m['name']!r}: CRC-32 of the data is {actual:08x}, "
                        f"declared {crc:08x}: the bytes were changed after the archive was written",
                        f"{path}:data", declared=crc, actual=actual)
                if usize is not None and len(data) != usize:
                    yield from self._inconsistent(
                        where, "size-mismatch", f"{m['name']!r}: {len(data)} bytes, declared {usize}",
                        f"{path}:data", declared=usize, actual=len(data))
            if record:
                return
            if method == _DEFLATED or not complete:
                sniffed = sniff_bytes(data, leaf)
            child = Artifact(self.artifact.path, sniffed, len(data), data=data, member=path,
                             depth=self.artifact.depth + 1)
            yield from ctx.scan_nested(child)
        finally:
            if isinstance(data, memoryview):
                data.release()
            view.release()

    def _inflate_error(self, where, m: dict, path: str, error: str) -> Finding | None:
        return self.ctx.finding(where, "archive-malformed", f"member {m['name']!r} cannot be decompressed: {error}",
                                evidence={"format": "zip", "error": error, "header_offset": m["header_offset"]},
                                key=f"inflate:{path}")


def _inflate(view: memoryview, start: int, end: int, limit: int) -> tuple[bytes, bool, str | None]:
    """Raw-deflate ``view[start:end]`` into at most ``limit`` bytes: ``(data, complete, error)``;
    ``complete`` when the stream ended within the limit."""
    d = zlib.decompressobj(-zlib.MAX_WBITS)
    out = bytearray()
    pos = start
    try:
        while pos < end and len(out) < limit:
            chunk = view[pos:min(pos + (1 << 20), end)]
            pos += len(chunk)
            out += d.decompress(chunk, limit - len(out))
            while d.unconsumed_tail and len(out) < limit:
                out += d.decompress(d.unconsumed_tail, limit - len(out))
            chunk.release()
            if d.eof:
                break
    except zlib.error as exc:
        return bytes(out), False, str(exc)
    if d.eof:
        return bytes(out), True, None
    if len(out) >= limit:
        return bytes(out), False, None
    return bytes(out), False, "the deflate stream ends early"


# ---------------------------------------------------------------------------------------- helpers

def _too_many(artifact: Artifact, ctx: ScanContext, count: int, opts) -> Iterator[Finding | None]:
    if count > opts["max_members"]:
        yield ctx.finding(artifact, "archive-limit-exceeded",
                          f"more than {opts['max_members']} members; only the first {opts['max_members']} were examined",
                          evidence={"limit": "max_members", "members": count})


def _member(parent: Artifact, ctx: ScanContext, name: str, reader, opts) -> Iterator[Finding | None]:
    """Sniff a streamed member from its head; read and scan the rest only when some scanner can use it."""
    budget = opts["max_decompressed"] - ctx.decompressed_bytes
    member = _join(parent, name)
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
