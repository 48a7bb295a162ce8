"""``uv.lock``: every ``[[package]]`` at its locked version, but the project itself (a ``virtual`` source, or
the ``editable``/``directory`` source ``.``).

A ``git``, ``url``, ``path``, ``directory`` or ``editable`` source is the entry's URL (``registry`` sources
are package indexes). Hashes come from ``sdist`` and ``wheels``; the marker from ``resolution-markers``.
"""
from __future__ import annotations

from typing import Any, ClassVar

from ._entries import any_of, field, locked, strings
from ._tables import read_lock
from .interface import Dependency, Manifest, Reader

_LOCATED = ("git", "url", "path", "directory", "editable")


class UvLockParser:
    name: ClassVar[str] = "uv.lock"

    def matches(self, filename: str) -> bool:
        return filename == "uv.lock"

    def parse(self, text: str, source: str, read: Reader | None = None) -> Manifest:
        return read_lock(text, source, "package", _package)


PARSER = UvLockParser()


def _package(package: dict[str, Any], **fields: Any) -> Dependency | None:
    origin = field(package, "source", dict, {})
    if "virtual" in origin or "." in (origin.get("editable"), origin.get("directory")):
        return None
    kind = next((k for k in _LOCATED if k in origin), None)
    files = [field(package, "sdist", dict, {}), *field(package, "wheels", list, [])]
    hashes = tuple(f["hash"] for f in files if isinstance(f, dict) and isinstance(f.get("hash"), str))
    return locked(field(package, "name", str), field(package, "version", str, ""),
                  url=field(origin, kind, str) if kind else None, hashes=hashes,
                  marker=any_of(strings(package, "resolution-markers")), **fields)
