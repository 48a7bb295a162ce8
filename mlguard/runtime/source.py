"""What a loader is about to read, opened once: the bytes to scan, and the same file, bytes or stream to
hand the loader afterwards."""
from __future__ import annotations

import hashlib
import io
import mmap
import os
import stat

_DIGEST_LIMIT = 64 << 20
"""Bytes sources up to this size are named by their SHA-256 in events; larger ones only by size (hashing a
big buffer costs as much as loading it)."""


class SourceChanged(Exception):
    """The file at the path is no longer the file that was scanned."""


class Source:
    """One thing to load. Build it with :meth:`of`; use it as a context manager."""

    def __init__(self, label: str, view, *, kind: str, file=None, identity: tuple | None = None,
                 replacement: io.BytesIO | None = None, start: int = 0):
        self.label = label
        """Path, stream name, or ``sha256:<hex>`` / ``<N bytes>`` for bytes: what events show."""
        self.view = view
        """The bytes the loader will read (memory-mapped for files, never copied)."""
        self.kind = kind
        """``path``, ``bytes`` or ``stream``."""
        self.identity = identity
        """(device, inode, size, mtime_ns, start) of a file, for the verdict cache; None for bytes in memory."""
        self._file = file
        self._map: mmap.mmap | None = None
        self._replacement = replacement
        self._start = start

    @classmethod
    def of(cls, value) -> "Source":
        """A path (str or os.PathLike), a bytes-like object, or a binary file object."""
        if isinstance(value, (str, os.PathLike)):
            return cls._path(value)
        if isinstance(value, (bytes, bytearray, memoryview)):
            return cls("<bytes>", memoryview(value), kind="bytes")
        return cls._stream(value)

    @classmethod
    def _path(cls, path) -> "Source":
        f = open(path, "rb")
        try:
            src = cls(os.fspath(path), b"", kind="path", file=f)
            src._map_file(f, 0)
            return src
        except BaseException:
            f.close()
            raise

    @classmethod
    def _stream(cls, f) -> "Source":
        name = getattr(f, "name", None)
        label = name if isinstance(name, str) else "<stream>"
        seekable = _call(f, "seekable", False)
        start = f.tell() if seekable else 0
        if seekable and _regular_fd(f) is not None:
            src = cls(label, b"", kind="stream", file=f, start=start)
            src._map_file(f, start)
            return src
        if isinstance(f, io.BytesIO):
            return cls(label, f.getbuffer()[start:], kind="stream", file=f, start=start)
        data = f.read()  # a stream we cannot map: buffer it, and load exactly what was scanned
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"expected a binary file object, got {type(f).__name__} reading {type(data).__name__}")
        return cls(label, memoryview(data), kind="stream", file=f, replacement=io.BytesIO(data),
                   start=start if seekable else -1)

    def _map_file(self, f, start: int) -> None:
        st = os.fstat(f.fileno())
        self.identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, start)
        if st.st_size > start:
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            self.view = memoryview(self._map)[start:]

    def event_label(self) -> str:
        if self.kind != "bytes":
            return self.label
        if len(self.view) <= _DIGEST_LIMIT:
            return "sha256:" + hashlib.sha256(self.view).hexdigest()
        return f"<{len(self.view)} bytes>"

    def cut(self, end: int) -> None:
        """Only the first ``end`` bytes will be loaded (the first pickle of the source)."""
        self.view = self.view[:end]

    # ---------------------------------------------------------------- handing over to the loader

    def file(self):
        """The opened file (path sources) or the stream, positioned where the loader must start."""
        if self._replacement is not None:
            self._replacement.seek(0)
            return self._replacement
        self.release_view()
        self._file.seek(self._start)
        return self._file

    def verify_path(self, path) -> None:
        """For loaders that must reopen the path themselves: refuse when it is now a different file."""
        st = os.stat(path)
        if (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) != self.identity[:4]:
            raise SourceChanged(f"{os.fspath(path)} changed between the scan and the load")

    def finish(self) -> None:
        """After the load: leave a seekable stream where the loader stopped reading the scanned copy."""
        if self._replacement is not None and self._start >= 0:
            self._file.seek(self._start + self._replacement.tell())

    def release_view(self) -> None:
        """Unmap what was scanned (the file stays open, so its inode cannot be reused meanwhile)."""
        if isinstance(self.view, memoryview):
            self.view.release()
        self.view = b""
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:  # a slice of the view is still referenced: the map closes when it goes
                pass
            self._map = None

    def close(self) -> None:
        self.release_view()
        if self.kind == "path" and self._file is not None:
            self._file.close()

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _call(f, method: str, default):
    try:
        return getattr(f, method)()
    except (AttributeError, OSError, ValueError):
        return default


def _regular_fd(f) -> int | None:
    """The file descriptor of a regular file, else None."""
    fd = _call(f, "fileno", None)
    if not isinstance(fd, int):
        return None
    try:
        return fd if stat.S_ISREG(os.fstat(fd).st_mode) else None
    except OSError:
        return None
