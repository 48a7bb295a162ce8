"""SHA-256 of files with :mod:`hashlib` (OpenSSL): the reference twin of ``mlguard_rs/src/hash.rs``.

Same streaming as the native kernel: the file is read with ``readinto`` into one fixed buffer of
:data:`BUF_SIZE` bytes, so memory does not grow with the file; the digest is of the bytes the reads
returned. hashlib releases the GIL while it hashes a large chunk, so threads overlap here too.
Use it through :func:`mlguard.engine.sha256_file`, not directly.
"""
from __future__ import annotations

import hashlib
import os

BUF_SIZE = 1 << 20
"""Bytes read per call (1 MiB), as in ``hash.rs``."""


def sha256_file(path: str | bytes | os.PathLike) -> str:
    """SHA-256 of the file at ``path`` as 64 lowercase hex digits; OSError naming ``path`` if unreadable."""
    digest = hashlib.sha256()
    buf = bytearray(BUF_SIZE)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while True:
            try:
                n = f.readinto(buf)
            except OSError as exc:  # a read error names no file: name it, as open() does
                if exc.filename is not None:
                    raise
                raise OSError(exc.errno, exc.strerror or str(exc), path) from exc
            if not n:
                break
            digest.update(view[:n])
    return digest.hexdigest()
