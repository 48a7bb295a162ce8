"""``pylock.toml`` and ``pylock.<name>.toml`` (PEP 751): every ``[[packages]]`` at its locked version.

A ``vcs``, ``archive`` or ``directory`` package has that URL or path; hashes come from ``sdist``, ``wheels``
and ``archive``; the marker is the package's ``marker``.
"""
from __future__ import annotations

import re
from typing import Any, ClassVar

from ._entries import field, locked
from ._tables import read_lock
from .interface import Dependency, Manifest, Reader

_NAME = re.compile(r"pylock\.([^.]+\.)?toml")


class PylockParser:
    name: ClassVar[str] = "pylock"

    def matches(self, filename: str) -> bool:
        return _NAME.fullmatch(filename) is not None

    def parse(self, text: str, source: str, read: Reader | None = None) -> Manifest:
        return read_lock(text, source, "packages", _package)


PARSER = PylockParser()


def _package(package: dict[str, Any], **fields: Any) -> Dependency:
    located = [field(package, key, dict, {}) for key in ("vcs", "archive", "directory")]
    url = next((t[k] for t in located for k in ("url", "path") if isinstance(t.get(k), str)), None)
    files = [field(package, "sdist", dict, {}), located[1], *field(package, "wheels", list, [])]
    hashes = tuple(f"{algorithm}:{digest}" for f in files if isinstance(f, dict)
                   for algorithm, digest in field(f, "hashes", dict, {}).items() if isinstance(digest, str))
    return locked(field(package, "name", str), field(package, "version", str, ""), url=url, hashes=hashes,
                  marker=field(package, "marker", str, "") or None, **fields)
