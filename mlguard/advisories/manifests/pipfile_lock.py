"""``Pipfile.lock`` (pipenv, JSON): the ``default`` and ``develop`` sections.

``version`` is a specifier (``==1.2.3``, or ``*``); a ``git``, ``path`` or ``file`` key is the entry's URL.
Hashes, extras and markers are kept. Lines are found by a text search (``_tables.TextIndex``).
"""
from __future__ import annotations

from typing import Any, ClassVar

from packaging.specifiers import InvalidSpecifier, SpecifierSet

from ._entries import Problems, dependency, field, reference, shorten, strings
from ._tables import TextIndex, load_json
from .interface import Dependency, Manifest, Reader

SECTIONS = ("default", "develop")


class PipfileLockParser:
    name: ClassVar[str] = "Pipfile.lock"

    def matches(self, filename: str) -> bool:
        return filename == "Pipfile.lock"

    def parse(self, text: str, source: str, read: Reader | None = None) -> Manifest:
        problems, dependencies, index = Problems(source), [], TextIndex(text)
        document = problems.expect(load_json(text, problems), dict, "the document", 1) or {}
        for section in SECTIONS:
            at = index.find("key", section) or 0
            entries = problems.expect(document.get(section), dict, repr(section)) or {}
            for name, entry in problems.entries(entries.items()):
                line = index.line(index.find("key", name, at))
                try:
                    dependencies.append(_entry(name, entry, line=line, source=source))
                except ValueError as e:
                    problems.add(line, f"{section}.{name}: {e}")
        return Manifest(tuple(dependencies), tuple(problems))


PARSER = PipfileLockParser()


def _entry(name: str, entry: Any, **fields: Any) -> Dependency:
    if not isinstance(entry, dict):
        raise ValueError(f"{shorten(repr(entry))} is not an object")
    fields.update(extras=tuple(sorted(strings(entry, "extras"))), hashes=strings(entry, "hashes"),
                  marker=field(entry, "markers", str, None))
    location = next((field(entry, key, str) for key in ("git", "path", "file") if key in entry), None)
    if location:
        return reference(location, name, **fields)
    version = field(entry, "version", str, "*")
    try:
        specifier = "" if version.strip() == "*" else str(SpecifierSet(version))
    except InvalidSpecifier:
        raise ValueError(f"version {shorten(version)} is not a specifier") from None
    return dependency(name, specifier, **fields)
