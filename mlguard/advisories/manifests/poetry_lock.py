"""``poetry.lock``: every ``[[package]]`` at its locked version.

A ``git``, ``url``, ``file`` or ``directory`` source is the entry's URL (``legacy`` sources are package
indexes). Hashes come from ``files``; the marker from ``markers`` (a string, or one per dependency group).
"""
from __future__ import annotations

from typing import Any, ClassVar

from ._entries import any_of, field, locked
from ._tables import read_lock
from .interface import Dependency, Manifest, Reader

_LOCATED = frozenset({"git", "url", "file", "directory"})


class PoetryLockParser:
    name: ClassVar[str] = "poetry.lock"

    def matches(self, filename: str) -> bool:
        return filename == "poetry.lock"

    def parse(self, text: str, source: str, read: Reader | None = None) -> Manifest:
        return read_lock(text, source, "package", _package)


PARSER = PoetryLockParser()


def _package(package: dict[str, Any], **fields: Any) -> Dependency:
    origin = field(package, "source", dict, {})
    url = field(origin, "url", str, "") if field(origin, "type", str, "") in _LOCATED else ""
    files = field(package, "files", list, [])
    hashes = tuple(f["hash"] for f in files if isinstance(f, dict) and isinstance(f.get("hash"), str))
    markers = package.get("markers")
    if isinstance(markers, dict):  # one per dependency group
        marker = any_of(m for m in markers.values() if isinstance(m, str))
    else:
        marker = field(package, "markers", str, None)
    return locked(field(package, "name", str), field(package, "version", str, ""), url=url or None,
                  hashes=hashes, marker=marker or None, **fields)
