"""Decide what a file is from its bytes, never from its name alone.

The sniffer looks at a bounded head of the file (``HEAD_SIZE`` bytes), a bounded tail
(for a zip end-of-central-directory record) and, for zips, the central directory
(``MAX_ZIP_ENTRIES`` entries at most).  It never deserializes anything and never raises
on hostile or malformed content: a file that claims to be a format but is broken is
still reported as that format, with ``detail`` saying what is wrong, so that the
matching scanner can report it.  Only I/O errors (``OSError``) escape.

Zips are listed by the zip kernel (:func:`mlguard.engine.zip_facts`) over an in-place view of
the file (the caller's buffer, a ``BytesIO``'s buffer or a memory map); its facts are kept in
``Sniffed.facts`` for the archive scanner. PyTorch tensor directories are skimmed, so a
checkpoint with thousands of tensors is sniffed without listing them. Without the kernel or a
view, the sniffer reads the directory itself, with the same result.

A file of any other format whose tail holds a zip end record with a central directory where it
says is a polyglot: the zip is listed in ``Sniffed.embedded`` and the archive scanner opens it.

Order of decision (first match wins):

1. empty file;
2. magic numbers at offset 0 (zip, gzip, xz, 7z, npy, HDF5, executables, bzip2, GGUF) --
   ASCII-looking magics (``BZh``, ``GGUF``, ``MZ``) need more evidence when the head is text;
3. safetensors (8-byte header length + ``{``) -- before pickle, because a header length
   such as 0x280 begins with the bytes ``\\x80\\x02``;
4. pickle with a PROTO header (``\\x80`` + protocol byte);
5. lzma-alone and zlib headers, confirmed by a bounded decompression probe (also joblib's
   old ``ZF`` z-files);
6. tar (``ustar`` at 257, or a v7 header with a valid checksum), HDF5 behind a user block;
7. ONNX (a bounded protobuf walk of ``ModelProto``'s top-level fields);
8. pickles without a PROTO header (protocol 0/1): a bounded run of the pickle kernel
   (:func:`mlguard.engine.pickle_facts`) over the head;
9. a zip whose end record sits in the tail although the file does not start with one
   (prepended bytes, self-extractors, polyglots);
10. text (no NUL, valid UTF-8): notebook, JSON, YAML or plain text;
11. binary.
"""
from __future__ import annotations

import enum
import functools
import io
import json
import lzma
import os
import re
import struct
import zlib
from typing import BinaryIO, Iterable

from .record import Record, field, replace

__all__ = [
    "Format",
    "Embedded",
    "Sniffed",
    "HEAD_SIZE",
    "TAIL_SIZE",
    "sniff_stream",
    "sniff_file",
    "sniff_bytes",
    "extension_mismatch",
]


class Format(str, enum.Enum):
    """The formats ML Guard tells apart; the values are the public lowercase names."""

    PICKLE = "pickle"
    ZIP = "zip"
    TAR = "tar"
    GZIP = "gzip"
    BZIP2 = "bzip2"
    XZ = "xz"
    ZLIB = "zlib"
    LZMA = "lzma"
    SEVENZIP = "7z"
    NPY = "npy"
    SAFETENSORS = "safetensors"
    ONNX = "onnx"
    GGUF = "gguf"
    HDF5 = "hdf5"
    EXECUTABLE = "executable"
    NOTEBOOK = "notebook"
    JSON = "json"
    YAML = "yaml"
    TEXT = "text"
    BINARY = "binary"
    EMPTY = "empty"

    def __str__(self) -> str:  # "pickle", not "Format.PICKLE"
        return self.value


_TEXT_FORMATS = frozenset({Format.NOTEBOOK, Format.JSON, Format.YAML, Format.TEXT})


class Embedded(Record):
    """A container found inside a file of another format (a polyglot), e.g. a zip whose end
    record sits in the tail of a safetensors file. The archive scanner opens it."""

    format: Format
    """The embedded container's format (today always ``Format.ZIP``)."""
    offset: int
    """Where the sniffer found it: for a zip, the offset of its end-of-central-directory record."""
    detail: str = ""
    """A short human-readable description."""


class Sniffed(Record):
    """What the sniffer decided about one file."""

    format: Format
    """The container or serialization format, decided from the content."""
    flavour: str | None = None
    """A refinement of ``format``: for zip ``"pytorch" | "torchscript" | "npz" | "keras" | "plain"``;
    for pickle ``"torch-legacy"`` or None; for executable ``"elf" | "pe" | "macho"``; for hdf5
    ``"keras-h5"`` when a Keras model config is visible in the head (else None); for tar
    ``"torch-legacy"`` (pre-1.0 torch.save: sys_info/pickle/storages/tensors members) or None;
    for zlib ``"joblib-zf"`` (the stream starts after joblib's 21/22-byte ``ZF`` prefix) or None."""
    detail: str = ""
    """A short human-readable reason, e.g. ``"PROTO 4"`` or ``"zip with archive/data.pkl"``."""
    offset: int = 0
    """Where the format's own bytes start when a prefix precedes them: the zlib stream of a
    ``"joblib-zf"`` file starts after joblib's ``ZF`` header. 0 otherwise."""
    embedded: tuple = ()
    """Containers embedded in a file of another format (:class:`Embedded`), e.g. a zip appended
    to a safetensors or pickle file. Empty for the containers themselves."""
    facts: dict | None = field(default=None, compare=False, repr=False)
    """Kernel facts computed on the way, reused by the format's scanner so that the file is
    parsed once: for zips, :func:`mlguard.engine.zip_facts` of the whole file (tensor
    directories skimmed). None when not computed. Not part of the result: ignored by ``==``."""

    @property
    def is_text(self) -> bool:
        """True for the text formats: notebook, json, yaml and plain text."""
        return self.format in _TEXT_FORMATS


# --------------------------------------------------------------------------- limits

HEAD_SIZE = 64 * 1024
"""Bytes read from the start of the file."""
TAIL_SIZE = 0xFFFF + 22
"""Bytes read from the end of the file: the largest zip end record (22 bytes + 64 KiB comment)."""
MAX_ZIP_ENTRIES = 100_000
"""Central-directory entries looked at, at most."""
MAX_ZIP_CD_BYTES = 16 * 1024 * 1024
"""Bytes of central directory read, at most."""
MAX_LOCAL_HEADERS = 64
"""Local file headers walked when a zip has no usable central directory."""
ZIP_SKIM_DIR = "data"
ZIP_SKIM_MIN = 64
"""Directories named ``data`` holding at least this many ordinary stored members (PyTorch tensor
storages) are listed by the zip kernel as one entry: their members' names are not needed to tell
the flavour, and a 5,000-tensor checkpoint is sniffed without building 5,000 names."""
MAX_HDF5_PROBES = 48
"""Offsets (512, 1024, 2048, ...) checked for an HDF5 signature behind a user block."""
PICKLE_PROBE_SIZE = 16 * 1024
"""Bytes handed to the pickle kernel when looking for a protocol 0/1 pickle."""
PICKLE_PROBE_OPCODES = 4096
"""Opcode limit of that probe; a run reaching it is a pickle."""
STRUCTURED_PARSE_MAX = 1024 * 1024
"""Files up to this size are parsed whole (json / notebook / yaml) to confirm the format."""
SAFETENSORS_MAX_HEADER = 100 * 1000 * 1000
"""Largest safetensors header length accepted (the official loader's limit)."""

# --------------------------------------------------------------------------- magics

_ZIP_LOCAL = b"PK\x03\x04"
_ZIP_EMPTY = b"PK\x05\x06"
_ZIP_SPANNED = b"PK\x07\x08"  # spanning marker in front of a local header
_ZIP_CENTRAL = b"PK\x01\x02"
_ZIP_EOCD = b"PK\x05\x06"
_ZIP64_LOCATOR = b"PK\x06\x07"
_ZIP64_EOCD = b"PK\x06\x06"
_GZIP = b"\x1f\x8b"
_XZ = b"\xfd7zXZ\x00"
_SEVENZIP = b"7z\xbc\xaf\x27\x1c"
_NPY = b"\x93NUMPY"
_GGUF = b"GGUF"
_HDF5 = b"\x89HDF\r\n\x1a\n"
_ELF = b"\x7fELF"
_MACHO = (b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe")
_MACHO_FAT = (b"\xca\xfe\xba\xbe", b"\xca\xfe\xba\xbf")  # CAFEBABE is also a Java class file
_BZIP2_BLOCK = (b"1AY&SY", b"\x17rE8P\x90")  # first block, or end of stream (empty input)
_TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")

# Opcodes a pickle without a PROTO header can start with: CPython's unpickler does not require
# PROTO and accepts every opcode whatever the protocol, so a "protocol 4" stream may lack the
# \x80 magic.  These push something (or import, for GLOBAL/INST) on an empty stack.
_PICKLE_FIRST = frozenset(
    b"()]}FGIJKLMNPSTUVXBCci"                      # protocol 0-3 pushes, GLOBAL, INST
    b"\x82\x83\x84\x88\x89\x8a\x8b"              # EXT1/2/4, NEWTRUE/NEWFALSE, LONG1/4
    b"\x8c\x8d\x8e\x8f\x95\x96\x97"              # protocol 4/5: unicode, bytes8, set, FRAME, ...
)


# --------------------------------------------------------------------------- public API

def sniff_bytes(data: bytes, name: str = "") -> Sniffed:
    """Sniff an in-memory file (bytes, bytearray, memoryview, mmap; not copied)."""
    reader = _BufferReader(data)
    return sniff_stream(reader, reader.size, name)


def sniff_file(path: str | os.PathLike) -> Sniffed:
    """Open ``path`` and sniff it.  Raises ``OSError`` when it cannot be read."""
    with open(path, "rb") as f:
        try:
            size = os.fstat(f.fileno()).st_size
        except (OSError, AttributeError, io.UnsupportedOperation):
            size = f.seek(0, os.SEEK_END)
        return sniff_stream(f, size, os.path.basename(os.fspath(path)))


def sniff_stream(f: BinaryIO, size: int, name: str = "") -> Sniffed:
    """Sniff a seekable binary file of ``size`` bytes (offset 0 is the file's start).

    Reads only the head, the tail and (for zips) the central directory and the local headers
    of the members it lists (tensor storages are skimmed).  Leaves the
    stream wherever the reads left it.  Never raises on content; ``OSError`` from the
    stream propagates.
    """
    if size <= 0:
        size = f.seek(0, os.SEEK_END)
    f.seek(0)
    want = min(size, HEAD_SIZE) if size > 0 else HEAD_SIZE
    head = _read(f, want)
    if not head:
        return Sniffed(Format.EMPTY, None, "empty file")
    if len(head) < want or size < len(head):
        size = len(head)  # the stream is shorter than the caller said: trust the bytes
    ctx = _Ctx(f, size, name or "", head)
    try:
        return _sniff(ctx)
    except OSError:
        raise
    except Exception as exc:  # a bug or hostile input we did not foresee: never a traceback
        return Sniffed(Format.BINARY, None, f"sniffer error: {type(exc).__name__}")


# --------------------------------------------------------------------------- internals

class _BufferReader:
    """A seekable read-only view of a buffer: slices are copied only when read."""

    def __init__(self, data) -> None:
        if isinstance(data, bytes):
            self._view = data
        else:
            try:
                self._view = memoryview(data).cast("B")
            except TypeError:  # not C-contiguous: copy once
                self._view = memoryview(data).tobytes()
        self.size = len(self._view)
        self._pos = 0

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, n: int = -1) -> bytes:
        end = self.size if n is None or n < 0 else min(self.size, self._pos + n)
        out = bytes(self._view[self._pos:end])
        self._pos = max(self._pos, end)
        return out


class _Ctx:
    """The bytes seen so far, with lazily read tail and helpers."""

    def __init__(self, f: BinaryIO, size: int, name: str, head: bytes) -> None:
        self.f = f
        self.size = size
        self.name = name
        self.head = head
        self.whole = len(head) >= size  # the head is the entire file
        self._tail: bytes | None = None
        self._text: bool | None = None
        self.eocd_cache: tuple | None = None  # (result of _find_eocd,) once computed

    @property
    def tail(self) -> bytes:
        if self._tail is None:
            if self.whole or self.size <= len(self.head):
                self._tail = self.head
            else:
                start = max(0, self.size - TAIL_SIZE)
                self._tail = self.pread(start, self.size - start)
        return self._tail

    @property
    def tail_start(self) -> int:
        return self.size - len(self.tail)

    def pread(self, offset: int, n: int) -> bytes:
        if n <= 0 or offset < 0 or offset >= self.size:
            return b""
        n = min(n, self.size - offset)
        if offset + n <= len(self.head):
            return self.head[offset:offset + n]
        self.f.seek(offset)
        return _read(self.f, n)

    @property
    def head_is_text(self) -> bool:
        if self._text is None:
            self._text = _looks_like_text(self.head, cut=not self.whole)
        return self._text


def _read(f: BinaryIO, n: int) -> bytes:
    """Read up to ``n`` bytes, looping over short reads."""
    chunks = []
    while n > 0:
        chunk = f.read(n)
        if not chunk:
            break
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _looks_like_text(head: bytes, cut: bool) -> bool:
    """No NUL and valid UTF-8 (a multibyte sequence cut at the end is fine when ``cut``)."""
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
        return True
    except UnicodeDecodeError as exc:
        return cut and exc.reason == "unexpected end of data" and exc.start >= len(head) - 3


def _sniff(ctx: _Ctx) -> Sniffed:
    result = None
    for check in (_magic, _safetensors, _pickle_proto2, _lzma_alone, _zlib, _tar, _hdf5_userblock,
                  _onnx, _pickle_proto01, _zip_in_tail):
        result = _guarded(check, ctx)
        if result is not None:
            break
    if result is None:
        result = _text(ctx) if ctx.head_is_text else Sniffed(Format.BINARY, None, "no known signature")
    if result.format not in (Format.ZIP, Format.EMPTY):
        embedded = _guarded(_embedded_zip, ctx)
        if embedded is not None:
            result = replace(result, embedded=(embedded,))
    return result


def _guarded(check, ctx: _Ctx) -> Sniffed | None:
    """Run one detector; an unexpected exception means "not this format"."""
    try:
        return check(ctx)
    except OSError:
        raise
    except Exception:
        return None


# --------------------------------------------------------------------------- magic numbers

def _magic(ctx: _Ctx) -> Sniffed | None:
    h = ctx.head
    if h.startswith(_ZIP_LOCAL) or h.startswith(_ZIP_SPANNED + _ZIP_LOCAL):
        return _zip(ctx)
    if h.startswith(_ZIP_EMPTY):
        return _zip(ctx)
    if h.startswith(_GZIP):
        method = h[2] if len(h) > 2 else None
        if method == 8:
            return Sniffed(Format.GZIP, None, "gzip (deflate)")
        if method is None or not ctx.head_is_text:
            return Sniffed(Format.GZIP, None, f"gzip magic, unknown method {method}")
    if h.startswith(_XZ):
        return Sniffed(Format.XZ, None, "xz stream")
    if h.startswith(_SEVENZIP):
        ver = f"{h[6]}.{h[7]}" if len(h) >= 8 else "?"
        return Sniffed(Format.SEVENZIP, None, f"7z archive version {ver}")
    if h.startswith(_NPY):
        return _npy(ctx)
    if h.startswith(_HDF5):
        return _hdf5(ctx, 0)
    if h.startswith(_ELF):
        cls = {1: "32-bit", 2: "64-bit"}.get(h[4] if len(h) > 4 else 0, "?-bit")
        return Sniffed(Format.EXECUTABLE, "elf", f"ELF {cls}")
    if h[:4] in _MACHO:
        return Sniffed(Format.EXECUTABLE, "macho", "Mach-O")
    if h[:4] in _MACHO_FAT and len(h) >= 8:
        narch = struct.unpack(">I", h[4:8])[0]
        if 0 < narch < 45:  # Java class files have their major version (>= 45) here
            return Sniffed(Format.EXECUTABLE, "macho", f"Mach-O universal, {narch} architectures")
    if h.startswith(b"BZh") and len(h) >= 4 and 0x31 <= h[3] <= 0x39:
        if h[4:10] in _BZIP2_BLOCK:
            return Sniffed(Format.BZIP2, None, f"bzip2, block size {chr(h[3])}00k")
        if not ctx.head_is_text:
            return Sniffed(Format.BZIP2, None, "bzip2 magic without a block header")
    if h.startswith(_GGUF):
        version = struct.unpack("<I", h[4:8])[0] if len(h) >= 8 else None
        if version is not None and 1 <= version <= 64:
            return Sniffed(Format.GGUF, None, f"GGUF version {version}")
        if not ctx.head_is_text:
            return Sniffed(Format.GGUF, None, f"GGUF magic, odd version {version}")
    if h.startswith(b"MZ"):
        return _pe(ctx)
    return None


def _npy(ctx: _Ctx) -> Sniffed:
    h = ctx.head
    if len(h) < 10:
        return Sniffed(Format.NPY, None, "npy magic, truncated header")
    major, minor = h[6], h[7]
    if major == 1:
        hlen = struct.unpack("<H", h[8:10])[0]
        start = 10
    elif major in (2, 3) and len(h) >= 12:
        hlen = struct.unpack("<I", h[8:12])[0]
        start = 12
    else:
        return Sniffed(Format.NPY, None, f"npy version {major}.{minor} (unknown)")
    detail = f"npy version {major}.{minor}"
    if start + hlen > ctx.size:
        return Sniffed(Format.NPY, None, detail + ", header longer than the file")
    header = h[start:start + min(hlen, 4096)]
    m = re.search(rb"'descr'\s*:\s*('[^']{0,64}'|\[)", header)
    if m:
        descr = m.group(1).decode("latin-1")
        detail += ", descr " + (descr if descr != "[" else "structured")
        if "O" in descr:
            detail += " (object array: holds a pickle)"
    return Sniffed(Format.NPY, None, detail)


def _pe(ctx: _Ctx) -> Sniffed | None:
    h = ctx.head
    if len(h) >= 0x40:
        lfanew = struct.unpack("<I", h[0x3C:0x40])[0]
        if 0x40 <= lfanew <= ctx.size - 4 and ctx.pread(lfanew, 4) == b"PE\x00\x00":
            return Sniffed(Format.EXECUTABLE, "pe", "PE executable")
    if not ctx.head_is_text:
        return Sniffed(Format.EXECUTABLE, "pe", "DOS MZ header without a PE signature")
    return None


# Decompression probes: this much input, at most this much output.  A text or binary head that
# happens to carry a zlib/lzma header fails to decode long before producing that much.
_PROBE_IN = 16 * 1024
_PROBE_OUT = 256 * 1024
_LZMA_MAX_DICT = 128 * 1024 * 1024    # xz -9e uses 64 MiB
_LZMA_MEMLIMIT = 160 * 1024 * 1024


# joblib < 0.10 compressed pickles, still read by joblib.load: "ZF" + hex(length) padded with
# spaces to 19 characters (20 for joblib <= 0.8.4 on Python 2), then a zlib stream.
_JOBLIB_ZF = re.compile(rb"ZF0x[0-9a-fA-F]{1,17}L? *")


def _zlib(ctx: _Ctx) -> Sniffed | None:
    h = ctx.head
    if h.startswith(b"ZF"):
        m = _JOBLIB_ZF.match(h[:22])
        if m and m.end() in (21, 22) and _zlib_probe(ctx, h[m.end():]):
            return Sniffed(Format.ZLIB, "joblib-zf",
                           f"joblib z-file: zlib stream at offset {m.end()} after a 'ZF' length prefix",
                           offset=m.end())
        return None
    if _zlib_probe(ctx, h):
        return Sniffed(Format.ZLIB, None, f"zlib stream (level hint {h[1] >> 6})")
    return None


def _zlib_probe(ctx: _Ctx, h: bytes) -> bool:
    if len(h) < 2:
        return False
    cmf, flg = h[0], h[1]
    if cmf & 0x0F != 8 or cmf >> 4 > 7 or (cmf * 256 + flg) % 31 != 0 or flg & 0x20:
        return False
    d = zlib.decompressobj()
    try:
        out = d.decompress(h[:_PROBE_IN], _PROBE_OUT)
    except zlib.error:
        return False
    if not out and not d.eof and (len(h) > 64 or ctx.head_is_text):
        return False  # input that yields nothing is not a believable stream ("x^2" is text)
    return True


def _lzma_alone(ctx: _Ctx) -> Sniffed | None:
    h = ctx.head
    if len(h) < 14 or h[0] >= 225 or h[13] != 0:
        return None
    dict_size = struct.unpack("<I", h[1:5])[0]
    usize = struct.unpack("<Q", h[5:13])[0]
    if dict_size < 4096 or dict_size > _LZMA_MAX_DICT:
        return None
    if usize != 0xFFFFFFFFFFFFFFFF and usize > (1 << 48):
        return None
    # (the dictionary is allocated up front but only touched as output is written)
    d = lzma.LZMADecompressor(format=lzma.FORMAT_ALONE, memlimit=_LZMA_MEMLIMIT)
    try:
        out = d.decompress(h[:_PROBE_IN], _PROBE_OUT)
    except (lzma.LZMAError, MemoryError):
        return None
    if not out and not d.eof and usize != 0:
        return None
    return Sniffed(Format.LZMA, None, "lzma-alone stream")


# --------------------------------------------------------------------------- safetensors

def _safetensors(ctx: _Ctx) -> Sniffed | None:
    h = ctx.head
    if len(h) < 10:
        return None
    n = struct.unpack("<Q", h[:8])[0]
    if n < 2 or n > SAFETENSORS_MAX_HEADER or n > ctx.size - 8:
        return None
    m = re.match(rb"[ \t\r\n]*\{[ \t\r\n]*([\"}])", h[8:8 + min(n, 256)])
    if not m:
        # The JSON may be cut by a tiny header; accept a lone "{" when that is all there is.
        if not re.match(rb"[ \t\r\n]*\{[ \t\r\n]*\Z", h[8:8 + n]):
            return None
    detail = f"header {n} bytes"
    if _has_zip_eocd(ctx):
        detail += "; zip end record in the tail (polyglot?)"
    return Sniffed(Format.SAFETENSORS, None, detail)


# --------------------------------------------------------------------------- pickle

def _pickle_proto2(ctx: _Ctx) -> Sniffed | None:
    h = ctx.head
    if len(h) < 2 or h[0] != 0x80 or h[1] > 5:
        return None  # (CPython accepts PROTO 0 and 1 too)
    if h.startswith(_TORCH_LEGACY_MAGIC):
        return Sniffed(Format.PICKLE, "torch-legacy", "PROTO 2, torch legacy magic number")
    detail = f"PROTO {h[1]}"
    if _has_zip_eocd(ctx):
        detail += "; zip end record in the tail"
    return Sniffed(Format.PICKLE, None, detail)


def _pickle_proto01(ctx: _Ctx) -> Sniffed | None:
    """A pickle without the PROTO magic (protocol 0/1, or a headless stream): ask the kernel.

    The kernel runs the head the way CPython's unpickler would (symbolic stack, marks, memo).
    Ordinary text fails within a few opcodes (bad argument, stack underflow, missing mark);
    a pickle reaches STOP, runs into the end of the probe, or hits the opcode limit.
    """
    h = ctx.head
    if h[0] not in _PICKLE_FIRST:
        return None
    try:
        from .engine import PickleLimits, pickle_facts
        limits = PickleLimits(max_opcodes=PICKLE_PROBE_OPCODES, max_pickles=4)
    except Exception:  # the engine is missing or broken: protocol 0/1 cannot be told from text
        return None
    probe = h[:PICKLE_PROBE_SIZE]
    facts = _facts(pickle_facts, probe, limits)
    first = _first_pickle(facts)
    if first is None:
        return None
    if (_get(first, "status") == "truncated" and (_get(first, "opcodes") or 0) < 8
            and len(probe) < len(h)):
        # one long operand ran past the probe window: look at the whole head
        probe = h
        facts = _facts(pickle_facts, probe, limits)
        first = _first_pickle(facts)
        if first is None:
            return None
    probe_is_whole = ctx.whole and len(probe) == len(h)
    status = _get(first, "status")
    opcodes = _get(first, "opcodes") or 0
    end = _get(first, "end")
    pickles = _get(facts, "pickles") or []
    globals_ = [g for g in (_get(facts, "globals") or []) if _get(g, "pickle", 0) == 0]
    calls = [c for c in (_get(facts, "calls") or []) if _get(c, "pickle", 0) == 0]
    # A GLOBAL whose module could never be imported ("ryptography/__init__.py,sha256=..." in a
    # RECORD file that starts with "c") is where CPython's find_class fails: nothing after it runs.
    dead = [_offset(g) for g in globals_ if not _importable(g)]
    if dead:
        cut = min(dead)
        globals_ = [g for g in globals_ if _offset(g) < cut]
        calls = [c for c in calls if _offset(c) < cut]
        status = "error"
    has_globals = bool(globals_)
    has_call = bool(calls)

    if status == "limit":
        return Sniffed(Format.PICKLE, None, f"no PROTO header, over {opcodes} opcodes")
    if status == "stop":
        if not isinstance(end, int) or opcodes < 2:
            return None
        rest = probe[end:]
        if has_globals or opcodes >= 4 or not rest.strip():
            return Sniffed(Format.PICKLE, None, f"no PROTO header, STOP after {opcodes} opcodes")
        # A tiny "pickle" (e.g. "N." in "N. Smith") followed by more text is text.
        if len(pickles) > 1 and _get(pickles[1], "status") in ("stop", "limit"):
            return Sniffed(Format.PICKLE, None, f"no PROTO header, {len(pickles)} pickles")
        if not _looks_like_text(rest, cut=not probe_is_whole):
            return Sniffed(Format.PICKLE, None,
                          f"no PROTO header, STOP after {opcodes} opcodes, binary after it")
        return None
    if status == "truncated":
        # Cut by the probe window, or the whole file ends inside the pickle (CPython still runs
        # every opcode before EOF): believable after a real run of opcodes or an import + call.
        if opcodes >= 8 or (has_globals and has_call):
            where = "in the probed head" if not probe_is_whole else "then the file ends"
            return Sniffed(Format.PICKLE, None, f"no PROTO header, {opcodes} opcodes {where}")
        if opcodes == 1 and not ctx.whole and _long_first_operand(ctx, probe):
            return Sniffed(Format.PICKLE, None, "no PROTO header, first operand longer than the head")
        return None
    if status == "error":
        # Opcodes before a bad byte have already run: an import followed by a call is a pickle.
        if has_globals and has_call:
            return Sniffed(Format.PICKLE, None,
                          f"no PROTO header, import and call before a parse error ({opcodes} opcodes)")
    return None


def _facts(pickle_facts, data: bytes, limits):
    try:
        return pickle_facts(data, limits=limits)
    except (ImportError, ValueError):
        pass  # MLGUARD_ENGINE forces an engine that is missing (or is misspelt): use the reference
    except Exception:
        return None
    try:
        return pickle_facts(data, limits=limits, engine="python")
    except Exception:
        return None


def _first_pickle(facts):
    pickles = _get(facts, "pickles") if facts is not None else None
    return pickles[0] if pickles else None


def _long_first_operand(ctx: _Ctx, probe: bytes) -> bool:
    """The first opcode's operand outlasts the whole head: a pickle hiding its payload after a
    long string (text rarely starts with ``S'`` or ``V`` and runs 64 KiB without a newline)."""
    op = probe[0]
    if op == 0x53:  # STRING: a quoted Python 2 str literal on one line
        return probe[1:2] in (b"'", b'"') and b"\n" not in probe
    if op == 0x56:  # UNICODE: raw-unicode-escape text on one line
        return b"\n" not in probe
    if ctx.head_is_text:
        return False  # a binary length prefix made of ASCII letters: "The quick..." is not one
    widths = {0x54: 4, 0x58: 4, 0x42: 4, 0x8D: 8, 0x8E: 8, 0x96: 8}  # BINSTRING, BINUNICODE, ...
    width = widths.get(op)
    if width is None or len(probe) < 1 + width:
        return False
    length = int.from_bytes(probe[1:1 + width], "little", signed=(op == 0x54))
    return 0 <= length <= ctx.size - 1 - width


def _get(obj, key, default=None):
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


def _offset(fact) -> int:
    off = _get(fact, "offset")
    return off if isinstance(off, int) else 0


# A name find_class could resolve: dotted parts of word characters (``__import__("my-mod")``
# imports my-mod.py, so "-" too).  "cat file" or "a/b.py,sha256=..." are not.
_NAME_PART = re.compile(r"[\w\-]+\Z")


def _importable(g) -> bool:
    """False only for a global whose module or name certainly cannot resolve; an operand the
    kernel could not resolve (computed, or cut at its string limit) is not held against it."""
    if _get(g, "truncated"):
        return True
    for text in (_get(g, "module"), _get(g, "name")):
        if text is None:
            continue
        if not isinstance(text, str) or not all(_NAME_PART.match(p) for p in text.split(".")):
            return False
    return True


# --------------------------------------------------------------------------- zip

def _has_zip_eocd(ctx: _Ctx) -> bool:
    try:
        return _find_eocd(ctx) is not None
    except OSError:
        raise
    except Exception:
        return False


def _find_eocd(ctx: _Ctx):
    """Locate a plausible end-of-central-directory record in the tail.

    Returns ``(cd_end, cd_offset_declared, cd_size, entries)`` or None, where ``cd_end`` is
    where the central directory really ends (the zip64 end record or the end record).
    """
    if ctx.eocd_cache is None:
        ctx.eocd_cache = (_find_eocd_uncached(ctx),)
    return ctx.eocd_cache[0]


def _rfind_eocd(tail: bytes, end: int) -> int:
    """``tail.rfind(_ZIP_EOCD, 0, end)``, sooner: bytes.rfind of a 4-byte needle runs at ~2 GB/s (30 µs on
    a 64 KiB tail without one, every pickle's case), memrchr of its rare third byte at memory speed. Past 32
    false candidates, the plain search takes over."""
    if end < len(_ZIP_EOCD):
        return -1
    hi = end - 1  # a candidate third byte at i < hi ends a signature by i + 2 <= end
    for _ in range(32):
        i = tail.rfind(b"\x05", 2, hi)
        if i < 0:
            return -1
        if tail[i - 2:i + 2] == _ZIP_EOCD:
            return i - 2
        hi = i
    return tail.rfind(_ZIP_EOCD, 0, hi + 1)


def _find_eocd_uncached(ctx: _Ctx):
    tail = ctx.tail
    base = ctx.tail_start
    pos = len(tail)
    for _ in range(32):
        pos = _rfind_eocd(tail, pos)
        if pos < 0:
            return None
        if len(tail) - pos < 22:
            continue
        disk, cd_disk, n_disk, n_total, cd_size, cd_off = struct.unpack("<HHHHII", tail[pos + 4:pos + 20])
        eocd = base + pos
        cd_end = eocd
        z = _zip64_eocd(ctx, eocd)
        if z is not None:
            rec_pos, z_total, z_size, z_off = z
            cd_end = rec_pos
            if n_total == 0xFFFF:
                n_total = z_total
            if cd_size == 0xFFFFFFFF:
                cd_size = z_size
            if cd_off == 0xFFFFFFFF:
                cd_off = z_off
            if disk == 0xFFFF:
                disk = 0
            if cd_disk == 0xFFFF:
                cd_disk = 0
        # (a comment running past the end of the file is tolerated, as Python's zipfile does)
        if disk == 0 and cd_disk == 0 and cd_size <= cd_end:
            return cd_end, cd_off, cd_size, n_total
    return None


def _zip64_eocd(ctx: _Ctx, eocd: int):
    """The zip64 end record in front of the end record: ``(position, entries, cd_size, cd_offset)``."""
    loc = ctx.pread(eocd - 20, 20)
    if len(loc) != 20 or not loc.startswith(_ZIP64_LOCATOR):
        return None
    declared = struct.unpack("<Q", loc[8:16])[0]
    # With prepended bytes the declared offset is off; the record usually sits right before the locator.
    for off in (eocd - 20 - 56, declared):
        rec = ctx.pread(off, 56)
        if len(rec) == 56 and rec.startswith(_ZIP64_EOCD):
            n_total, cd_size, cd_off = struct.unpack("<QQQ", rec[32:56])
            return off, n_total, cd_size, cd_off
    return None


def _zip(ctx: _Ctx) -> Sniffed:
    """The file starts like a zip: it is one, however broken; the flavour is best effort."""
    try:
        return _zip_unguarded(ctx)
    except OSError:
        raise
    except Exception as exc:
        return Sniffed(Format.ZIP, "plain", f"zip (plain), unreadable directory ({type(exc).__name__})")


def _zip_unguarded(ctx: _Ctx) -> Sniffed:
    listing = _kernel_listing(ctx)
    if listing is None:  # no engine or no buffer: read the directory here
        eocd = _find_eocd(ctx)
        if eocd is None:
            listing = (None, (), 0, "no end of central directory")
        else:
            names, note, _ = _central_names(ctx, eocd)
            listing = (names, (), len(names or ()), note)
    names, dirs, count, note, facts = listing if len(listing) == 5 else (*listing, None)
    if names is None:
        names, lnote = _local_names(ctx)
        note = note + ", " + lnote
        dirs, count = (), len(names)
    flavour = _zip_flavour(names, dirs)
    return Sniffed(Format.ZIP, flavour, _zip_detail(flavour, names, count, note), facts=facts)


def _kernel_listing(ctx: _Ctx):
    """Names from the zip kernel (PyTorch tensor directories skimmed): ``(names | None, skimmed
    dirs, member count, note, facts)``, or None when the kernel or an in-place view of the file is
    unavailable. ``names`` is None when there is no usable directory. The kernel also reads the
    local headers of the members it lists (a few pages for a checkpoint) so that the archive
    scanner can reuse its facts instead of parsing the file again."""
    try:
        from .engine import zip_facts
        limits = _zip_limits()
    except Exception:
        return None
    with _whole_buffer(ctx.f) as buf:
        if buf is None or len(buf) != ctx.size:
            return None
        kwargs = dict(limits=limits, skim_dir=ZIP_SKIM_DIR, skim_min=ZIP_SKIM_MIN)
        try:
            facts = zip_facts(buf, **kwargs)
        except (ImportError, ValueError):  # MLGUARD_ENGINE names a missing engine: the reference
            facts = zip_facts(buf, engine="python", **kwargs)
    return (*_listing_from_facts(facts), facts)


@functools.cache
def _zip_limits():
    from .engine import ZipLimits
    return ZipLimits(max_members=MAX_ZIP_ENTRIES)


def _listing_from_facts(facts: dict):
    eocd = facts["eocd"]
    if eocd is None:
        return None, (), 0, "no end of central directory"
    codes = [e["code"] for e in facts["errors"]]
    if facts["cd_start"] is None:
        return None, (), 0, "central directory not found"
    zip64 = facts["zip64"]
    cd_end = zip64["offset"] if zip64 and zip64["offset"] is not None else eocd["offset"]
    cd_size = zip64["cd_size"] if zip64 and zip64["offset"] is not None else eocd["cd_size"]
    names = [m["name"] for m in facts["members"] if m["central"]]
    dirs = tuple(s["dir"] for s in facts["skimmed"])
    count = facts["entries_found"]
    declared = facts["entries_declared"]
    if declared == 0 and cd_size == 0:
        return [], (), 0, "empty zip"
    notes = []
    if facts["cd_start"] + cd_size != cd_end:
        notes.append("bytes between central directory and end record")
    if "directory-corrupt" in codes:
        notes.append("central directory entry corrupt")
    if facts["limit"] == "members":
        notes.append(f"stopped after {MAX_ZIP_ENTRIES} entries")
    elif facts["limit"] == "names":
        notes.append("stopped at the name-size limit")
    if declared != count and facts["limit"] is None and not notes:
        notes.append(f"end record declares {declared} entries, directory holds {count}")
    if facts["shift"] > 0:
        notes.append(f"{facts['shift']} bytes before the zip")
    elif facts["shift"] < 0:
        notes.append("central directory offset points past its real position")
    return names, dirs, count, ", ".join(notes)


class _whole_buffer:
    """Context manager: the whole stream as a read-only buffer, without reading it (the
    in-memory view, a BytesIO's buffer, or a memory map of a real file); None if impossible."""

    def __init__(self, f) -> None:
        self.f = f
        self._release = None

    def __enter__(self):
        f = self.f
        if isinstance(f, _BufferReader):
            return f._view
        if isinstance(f, io.BytesIO):
            view = f.getbuffer()
            self._release = view.release
            return view
        try:
            fileno = f.fileno()
            size = os.fstat(fileno).st_size
            if size <= 0:
                return None
            import mmap
            m = mmap.mmap(fileno, 0, access=mmap.ACCESS_READ)
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
            return None
        self._release = m.close
        return m

    def __exit__(self, *exc) -> None:
        if self._release is not None:
            self._release()


def _central_names(ctx: _Ctx, eocd) -> tuple[list[str] | None, str, int]:
    """Member names from the central directory: ``(names or None, note, shift)``.

    ``shift`` is how many bytes sit in front of the zip (prepended data, polyglots).
    """
    cd_end, cd_off, cd_size, n_total = eocd
    if n_total == 0 and cd_size == 0:
        return [], "empty zip", 0
    # The directory ends where the end record starts; prepended bytes shift every offset.
    start = cd_end - cd_size
    notes = []
    data = ctx.pread(start, min(cd_size, MAX_ZIP_CD_BYTES)) if start >= 0 else b""
    if not data.startswith(_ZIP_CENTRAL):
        # maybe the declared offset is right and something sits between directory and end record
        start = cd_off
        data = ctx.pread(cd_off, min(cd_size, MAX_ZIP_CD_BYTES))
        if not data.startswith(_ZIP_CENTRAL):
            return None, "central directory not found", 0
        notes.append("bytes between central directory and end record")
    shift = start - cd_off
    names: list[str] = []
    pos = 0
    while pos + 46 <= len(data) and len(names) < MAX_ZIP_ENTRIES:
        if data[pos:pos + 4] != _ZIP_CENTRAL:
            notes.append("central directory entry corrupt")
            break
        flags = struct.unpack("<H", data[pos + 8:pos + 10])[0]
        nlen, xlen, clen = struct.unpack("<HHH", data[pos + 28:pos + 34])
        raw = data[pos + 46:pos + 46 + nlen]
        names.append(raw.decode("utf-8" if flags & 0x800 else "cp437", "replace"))
        pos += 46 + nlen + xlen + clen
    if len(names) >= MAX_ZIP_ENTRIES:
        notes.append(f"stopped after {MAX_ZIP_ENTRIES} entries")
    elif cd_size > MAX_ZIP_CD_BYTES:
        notes.append("central directory too large, read in part")
    if n_total != len(names) and len(names) < MAX_ZIP_ENTRIES and not notes:
        notes.append(f"end record declares {n_total} entries, directory holds {len(names)}")
    if shift > 0:
        notes.append(f"{shift} bytes before the zip")
    elif shift < 0:
        notes.append("central directory offset points past its real position")
    return names, ", ".join(notes), shift


def _local_names(ctx: _Ctx) -> tuple[list[str], str]:
    """Walk local file headers from the start (no central directory to trust)."""
    names: list[str] = []
    pos = 4 if ctx.head.startswith(_ZIP_SPANNED) else 0
    for _ in range(MAX_LOCAL_HEADERS):
        hdr = ctx.pread(pos, 30)
        if len(hdr) < 30 or hdr[:4] != _ZIP_LOCAL:
            break
        flags = struct.unpack("<H", hdr[6:8])[0]
        csize = struct.unpack("<I", hdr[18:22])[0]
        nlen, xlen = struct.unpack("<HH", hdr[26:30])
        raw = ctx.pread(pos + 30, nlen)
        names.append(raw.decode("utf-8" if flags & 0x800 else "cp437", "replace"))
        if flags & 0x08 or csize == 0xFFFFFFFF:
            break  # sizes follow the data: cannot skip without inflating
        pos += 30 + nlen + xlen + csize
    return names, f"{len(names)} local headers read"


def _zip_flavour(names: Iterable[str], dirs: Iterable[str] = ()) -> str:
    """The zip's flavour from its member names; ``dirs`` are directories whose members were not
    listed one by one (each holds at least one member)."""
    names = list(names)
    dirs = list(dirs)
    data = set()  # prefixes ("" or "dir/") holding a data.pkl
    for n in names:
        if n.endswith(".pkl"):
            if n == "constants.pkl" or n.endswith("/constants.pkl"):
                return "torchscript"
            if n == "data.pkl" or n.endswith("/data.pkl"):
                data.add(n[:-len("data.pkl")])
    nameset = set(names)
    if data:
        paths = names + dirs
        code = tuple(p + "code/" for p in data)
        if any(n.startswith(code) for n in paths):
            return "torchscript"
        for p in data:
            if (p + "byteorder" in nameset or p + "version" in nameset or p + ".data/version" in nameset
                    or any(n.startswith(p + "data/") for n in paths)):
                return "pytorch"
    if "config.json" in nameset and "metadata.json" in nameset:
        return "keras"
    if names and not dirs and all(n.endswith(".npy") for n in names):
        return "npz"
    return "plain"


def _zip_detail(flavour: str, names: list[str], count: int, note: str) -> str:
    parts = [f"zip ({flavour}), {count} members"]
    for leaf in ("data.pkl", "constants.pkl", "config.json"):
        key = next((n for n in names if n == leaf or n.endswith("/" + leaf)), None)
        if key:
            parts.append(f"with {key}")
            break
    if note:
        parts.append(note)
    return ", ".join(parts)


def _zip_in_tail(ctx: _Ctx) -> Sniffed | None:
    """A zip that does not start at offset 0: prepended bytes, self-extractors, polyglots."""
    if ctx.whole and _ZIP_EOCD not in ctx.head:
        return None
    eocd = _find_eocd(ctx)
    if eocd is None:
        return None
    listing = _kernel_listing(ctx)
    facts = None
    if listing is None:
        names, note, _ = _central_names(ctx, eocd)
        dirs, count = (), len(names or ())
    else:
        names, dirs, count, note, facts = listing
    if not names and not dirs:
        return None
    flavour = _zip_flavour(names, dirs)
    return Sniffed(Format.ZIP, flavour, _zip_detail(flavour, names, count, note), facts=facts)


def _embedded_zip(ctx: _Ctx) -> Embedded | None:
    """A zip end record in the tail whose central directory is where it says (a polyglot)."""
    if ctx.whole and _ZIP_EOCD not in ctx.head:
        return None
    eocd = _find_eocd(ctx)
    if eocd is None:
        return None
    cd_end, cd_off, cd_size, n_total = eocd
    if n_total == 0 or cd_size < 46:
        return None
    start = cd_end - cd_size
    if ctx.pread(start, 4) != _ZIP_CENTRAL and ctx.pread(cd_off, 4) != _ZIP_CENTRAL:
        return None
    where = _eocd_offset(ctx)
    return Embedded(Format.ZIP, where, f"zip archive, {n_total} members, end record at offset {where}")


def _eocd_offset(ctx: _Ctx) -> int:
    """Offset of the last end-record signature in the tail (the one readers use)."""
    tail = ctx.tail
    pos = _rfind_eocd(tail, max(0, len(tail) - 18))
    return ctx.tail_start + pos if pos >= 0 else -1


# --------------------------------------------------------------------------- tar

_TORCH_TAR_MEMBERS = frozenset({"sys_info", "pickle", "storages", "tensors"})
_MAX_TAR_HEADERS = 16


def _tar(ctx: _Ctx) -> Sniffed | None:
    h = ctx.head
    if len(h) < 512:
        return None
    block = h[:512]
    magic = block[257:265]
    ustar = magic.startswith(b"ustar")
    checksum_ok = _tar_checksum_ok(block)
    if not checksum_ok and (not ustar or ctx.head_is_text):
        return None
    kind = "ustar" if magic == b"ustar\x0000" else ("gnu" if magic.startswith(b"ustar ") else "v7")
    names = _tar_names(ctx)
    flavour = "torch-legacy" if len(_TORCH_TAR_MEMBERS.intersection(names)) >= 2 else None
    detail = f"tar ({kind}), first member {names[0] if names else _tar_name(block)!r}"
    if not checksum_ok:
        detail += ", bad header checksum"
    return Sniffed(Format.TAR, flavour, detail)


def _tar_name(block: bytes) -> str:
    return block[:100].split(b"\x00", 1)[0].decode("utf-8", "replace")


def _tar_names(ctx: _Ctx) -> list[str]:
    """Names of the first few members (skipping pax / GNU long-name headers)."""
    names: list[str] = []
    pos = 0
    for _ in range(_MAX_TAR_HEADERS):
        block = ctx.pread(pos, 512)
        if len(block) < 512 or not _tar_checksum_ok(block):
            break
        digits = block[124:136].replace(b"\x00", b" ").strip()
        if not digits or not all(0x30 <= c <= 0x37 for c in digits):
            break
        size = int(digits, 8)
        if block[156:157] not in (b"x", b"g", b"L", b"K"):
            names.append(_tar_name(block))
        pos += 512 + (size + 511) // 512 * 512
    return names


def _tar_checksum_ok(block: bytes) -> bool:
    field = block[148:156]
    digits = field.replace(b"\x00", b" ").strip()
    if not digits or not all(0x30 <= c <= 0x37 for c in digits):
        return False
    declared = int(digits, 8)
    unsigned = sum(block[:148]) + 8 * 0x20 + sum(block[156:512])
    if declared != unsigned:
        signed = unsigned - sum(c for c in block if c >= 128) * 2 + sum(c for c in field if c >= 128) * 2
        if declared != signed:
            return False
    return block[0] != 0  # an all-zero name is an end-of-archive block, not a file


# --------------------------------------------------------------------------- hdf5

def _hdf5(ctx: _Ctx, offset: int) -> Sniffed:
    detail = "HDF5" + (f" after a {offset}-byte user block" if offset else "")
    flavour = None
    if b"model_config" in ctx.head or b"keras_version" in ctx.head:
        flavour = "keras-h5"
    return Sniffed(Format.HDF5, flavour, detail)


def _hdf5_userblock(ctx: _Ctx) -> Sniffed | None:
    off = 512
    for _ in range(MAX_HDF5_PROBES):
        if off + 8 > ctx.size:
            return None
        if ctx.pread(off, 8) == _HDF5:
            return _hdf5(ctx, off)
        off *= 2
    return None


# --------------------------------------------------------------------------- onnx

# ModelProto field number -> wire type (0 varint, 2 length-delimited)
_ONNX_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2}


def _varint(buf: bytes, pos: int) -> tuple[int, int] | None:
    value = 0
    for i in range(10):
        if pos + i >= len(buf):
            return None
        b = buf[pos + i]
        value |= (b & 0x7F) << (7 * i)
        if not b & 0x80:
            return value, pos + i + 1
    return None


def _onnx(ctx: _Ctx) -> Sniffed | None:
    h = ctx.head
    if not h or h[0] not in (0x08, 0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72, 0xA2, 0xCA):
        return None
    pos = 0
    seen: set[int] = set()
    ir_version = None
    for _ in range(4096):
        if pos >= len(h):
            break
        t = _varint(h, pos)
        if t is None:
            if ctx.whole:
                return None
            break  # tag cut by the head
        tag, pos = t
        field, wt = tag >> 3, tag & 7
        if _ONNX_FIELDS.get(field) != wt:
            return None
        if wt == 0:
            v = _varint(h, pos)
            if v is None:
                if ctx.whole:
                    return None
                break
            value, pos = v
            if field == 1:
                ir_version = value
        else:
            ln = _varint(h, pos)
            if ln is None:
                if ctx.whole:
                    return None
                break
            length, pos = ln
            if pos + length > ctx.size:
                return None
            pos += length
        seen.add(field)
    else:
        return None  # 4096 top-level fields inside the head: not a model
    if ctx.whole and pos != ctx.size:
        return None
    if ir_version is None or not 1 <= ir_version <= 1000:
        return None
    if not seen & {7, 8}:
        return None
    return Sniffed(Format.ONNX, None, f"ONNX ModelProto, ir_version {ir_version}")


# --------------------------------------------------------------------------- text

_NB_HEAD = re.compile(rb'\A(?:\xef\xbb\xbf)?\s*\{\s*"(?:cells|metadata|nbformat|nbformat_minor)"\s*:')
_NB_CELLS = re.compile(rb'"cells"\s*:\s*\[')
_NB_FORMAT = re.compile(rb'"nbformat"\s*:\s*\d')


def _text(ctx: _Ctx) -> Sniffed:
    h = ctx.head
    body = h[3:] if h.startswith(b"\xef\xbb\xbf") else h
    stripped = body.lstrip()
    lname = ctx.name.lower()

    if stripped[:1] in (b"{", b"["):
        whole = _whole_text(ctx)
        if whole is not None:
            try:
                obj = json.loads(whole)
            except (ValueError, RecursionError):
                obj = _NOT_JSON
            if obj is not _NOT_JSON:
                if isinstance(obj, dict) and "cells" in obj and "nbformat" in obj:
                    return Sniffed(Format.NOTEBOOK, None, f"notebook, nbformat {obj.get('nbformat')!r}")
                kind = {dict: "object", list: "array"}.get(type(obj), type(obj).__name__)
                return Sniffed(Format.JSON, None, f"JSON {kind}")
        elif ctx.size > STRUCTURED_PARSE_MAX:
            # Too large to parse: judge from the head (and the tail, where "nbformat" sits).
            if _NB_HEAD.match(h) and _NB_CELLS.search(h) and (
                    _NB_FORMAT.search(h) or _NB_FORMAT.search(ctx.tail)):
                return Sniffed(Format.NOTEBOOK, None, "notebook (large, not parsed)")
            if _JSON_START.match(stripped):
                return Sniffed(Format.JSON, None, "JSON (large, not parsed)")
    if stripped.startswith(b"%YAML") or stripped.startswith(b"---"):
        return Sniffed(Format.YAML, None, "YAML document marker")
    if lname.endswith((".yml", ".yaml")):
        if ctx.size > STRUCTURED_PARSE_MAX:
            return Sniffed(Format.YAML, None, "YAML by name (large, not parsed)")
        whole = _whole_text(ctx)
        if whole is not None and _yaml_parses(whole):
            return Sniffed(Format.YAML, None, "YAML (parsed)")
    return Sniffed(Format.TEXT, None, "UTF-8 text")


_JSON_START = re.compile(rb'(\{\s*["}]|\[\s*[-\d"{\[\]tfn])')


def _whole_text(ctx: _Ctx) -> str | None:
    """The whole file as text when it is small enough to parse (else None)."""
    if ctx.size > STRUCTURED_PARSE_MAX:
        return None
    raw = ctx.head if ctx.whole else ctx.pread(0, ctx.size)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None


_NOT_JSON = object()


def _yaml_parses(text: str) -> bool:
    try:
        import yaml
    except Exception:
        return False
    loader = getattr(yaml, "CSafeLoader", None) or yaml.SafeLoader
    try:  # the event parser keeps its own stack: deep nesting cannot overflow the C stack as composing can
        for _ in yaml.parse(text, Loader=loader):
            pass
        return True
    except Exception:
        return False


# --------------------------------------------------------------------------- extensions

_TEXTUAL = frozenset(_TEXT_FORMATS)
_PICKLE_COMPRESSED = frozenset({Format.PICKLE, Format.ZIP, Format.GZIP, Format.BZIP2, Format.XZ,
                                Format.ZLIB, Format.LZMA})

# extension -> (acceptable formats, required zip flavours or None)
_EXTENSIONS: dict[str, tuple[frozenset, frozenset | None]] = {}


def _ext(exts: str, formats: Iterable[Format], zip_flavours: Iterable[str] | None = None) -> None:
    for e in exts.split():
        _EXTENSIONS[e] = (frozenset(formats), frozenset(zip_flavours) if zip_flavours else None)


_ext(".pt .ckpt .pt2 .ptl", {Format.PICKLE, Format.ZIP})
_ext(".pth", {Format.PICKLE, Format.ZIP, Format.TEXT})  # also Python's site-packages path files
_ext(".bin", {Format.PICKLE, Format.ZIP, Format.BINARY})
_ext(".pkl .pickle .joblib .dill .pck .pcl", _PICKLE_COMPRESSED)
_ext(".safetensors", {Format.SAFETENSORS})
_ext(".onnx", {Format.ONNX})
_ext(".gguf", {Format.GGUF})
_ext(".npy", {Format.NPY})
_ext(".npz", {Format.ZIP}, {"npz", "plain"})
_ext(".h5 .hdf5 .hdf .he5", {Format.HDF5})
_ext(".keras", {Format.ZIP, Format.HDF5}, {"keras"})
_ext(".json .ipynb .yaml .yml .txt .md .rst .py .cfg .toml .ini .csv .tsv .jsonl", _TEXTUAL)
_ext(".tar .nemo", {Format.TAR, Format.GZIP})
_ext(".tar.gz .tgz", {Format.GZIP})
_ext(".gz", {Format.GZIP, Format.ZLIB})  # joblib 0.9/0.10 wrote zlib streams as .gz
_ext(".tar.bz2 .tbz2 .bz2", {Format.BZIP2})
_ext(".tar.xz .txz .xz", {Format.XZ})
_ext(".lzma", {Format.LZMA})
_ext(".zlib .z", {Format.ZLIB})
_ext(".zip .mar .whl .jar", {Format.ZIP})
_ext(".7z", {Format.SEVENZIP})
_ext(".exe .dll .so .dylib", {Format.EXECUTABLE})


_TORCH_EXTENSIONS = frozenset({".pt", ".pth", ".bin", ".ckpt"})


def _suffix(name: str) -> str | None:
    base = os.path.basename(name.replace("\\", "/")).lower()
    for compound in (".tar.gz", ".tar.bz2", ".tar.xz"):
        if base.endswith(compound) and len(base) > len(compound):
            return compound
    dot = base.rfind(".")
    if dot <= 0:
        return None
    return base[dot:]


def extension_mismatch(name: str, sniffed: Sniffed) -> str | None:
    """Explain when ``name``'s extension disagrees with the sniffed content, else None.

    Unknown extensions and empty files never disagree.
    """
    if sniffed.format is Format.EMPTY:
        return None
    ext = _suffix(name or "")
    if ext is None or ext not in _EXTENSIONS:
        return None
    formats, flavours = _EXTENSIONS[ext]
    fmt = sniffed.format
    what = fmt.value + (f" ({sniffed.flavour})" if sniffed.flavour else "")
    if fmt is Format.TAR and sniffed.flavour == "torch-legacy" and ext in _TORCH_EXTENSIONS:
        return None  # torch.load still reads the pre-1.0 tar checkpoints
    if fmt not in formats:
        return f"named {ext} but content is {what}"
    if fmt is Format.ZIP and flavours is not None and sniffed.flavour not in flavours:
        return f"named {ext} but content is {what}"
    return None
