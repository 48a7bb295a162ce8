"""Making entries and problems: PEP 508 requirement strings, PEP 440 pins, URL and path references."""
from __future__ import annotations

import re
from typing import Any, Iterable, Iterator, TypeVar
from urllib.parse import unquote

from packaging.requirements import Requirement
from packaging.specifiers import InvalidSpecifier, Specifier, SpecifierSet
from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from .interface import Dependency, Problem

MAX_ENTRIES = 100_000
"""Entries read from one manifest (real ones have at most a few thousand): bounds the work per byte."""

_KINDS = {str: "a string", list: "an array", dict: "a table"}
_T = TypeVar("_T")


def shorten(text: str, limit: int = 80) -> str:
    """``text`` quoted for a message, cut to ``limit`` characters."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


class Problems(list):
    """The problems met reading one file."""

    def __init__(self, source: str):
        super().__init__()
        self.source = source
        self.entries_read = 0

    def add(self, line: int | None, message: str) -> None:
        self.append(Problem(self.source, line, message))

    def entries(self, items: Iterable[_T]) -> Iterator[_T]:
        """``items``, until ``MAX_ENTRIES`` have been read from this file (then one problem)."""
        for item in items:
            self.entries_read += 1
            if self.entries_read > MAX_ENTRIES:
                if self.entries_read == MAX_ENTRIES + 1:
                    self.add(None, f"not read: more than {MAX_ENTRIES:,} entries")
                return
            yield item

    def expect(self, value: Any, kind: type, what: str, line: int | None = None) -> Any:
        """``value`` when it is a ``kind`` or None; otherwise None, and a problem saying ``what`` is not one."""
        if value is None or isinstance(value, kind):
            return value
        self.add(line, f"{what} is not {_KINDS[kind]}")
        return None


_REQUIRED: Any = object()


def field(table: dict[str, Any], key: str, kind: type, default: Any = _REQUIRED) -> Any:
    """``table[key]``, or ``default`` when absent; ValueError when it is missing (no default) or not a ``kind``."""
    value = table.get(key, default)
    if value is _REQUIRED:
        raise ValueError(f"no {key!r}")
    if value is not default and not isinstance(value, kind):
        raise ValueError(f"{key!r} is {shorten(repr(value))}, not {_KINDS[kind]}")
    return value


def strings(table: dict[str, Any], key: str) -> tuple[str, ...]:
    """The array of strings ``table[key]`` (empty when absent); ValueError when it holds anything else."""
    values = field(table, key, list, [])
    if not all(isinstance(v, str) for v in values):
        raise ValueError(f"{key!r} holds something other than strings")
    return tuple(values)


def pinned(specifier: str) -> str | None:
    """The version ``specifier`` pins (``==`` without a wildcard, or ``===``), else None."""
    try:
        specs = sorted(SpecifierSet(specifier), key=str)
    except InvalidSpecifier:
        return None
    return next((s.version for s in specs
                 if s.operator == "===" or (s.operator == "==" and not s.version.endswith(".*"))), None)


def exact(version: str) -> str:
    """The specifier allowing exactly ``version``: ``==`` for a PEP 440 version, else ``===``; "" if neither."""
    try:
        Version(version)
        return f"=={version.strip()}"
    except InvalidVersion:
        pass
    try:
        return str(Specifier(f"==={version}"))
    except InvalidSpecifier:
        return ""


def dependency(name: str, specifier: str = "", *, version: str | None = None, **fields: Any) -> Dependency:
    """An entry with its normalised name, and its version when given or pinned by ``specifier``."""
    return Dependency(name=name, normalized=canonicalize_name(name), specifier=specifier,
                      version=version or pinned(specifier), **fields)


def locked(name: str, version: str | None, **fields: Any) -> Dependency:
    """A lock file entry: exactly ``version``, or any version when the lock does not say."""
    return dependency(name, exact(version), version=version, **fields) if version else dependency(name, **fields)


def from_filename(location: str) -> tuple[str, str] | None:
    """(name, version) of the wheel or sdist a URL or path names, None when it names neither."""
    filename = unquote(re.split(r"[/\\]", location.split("#", 1)[0].split("?", 1)[0])[-1])
    try:
        if filename.endswith(".whl"):
            name, version, _, _ = parse_wheel_filename(filename)
        else:
            name, version = parse_sdist_filename(filename)
    except ValueError:
        return None
    return name, str(version)


def reference(location: str, name: str = "", **fields: Any) -> Dependency:
    """An entry for a URL, VCS repository or local path; a wheel or sdist file name gives the version (and
    the name, when ``name`` is not given)."""
    archive = from_filename(location)
    if archive and name and canonicalize_name(name) != archive[0]:
        archive = None  # a file of another project: its version says nothing
    if archive and not name:
        name = archive[0]
    return dependency(name, version=archive[1] if archive else None, url=location, **fields)


def requirement(text: str, **fields: Any) -> Dependency:
    """The entry a PEP 508 requirement string declares; ValueError saying why when it is not one."""
    try:
        req = Requirement(text)
    except ValueError as e:
        raise ValueError(f"cannot parse requirement {shorten(text)}: {str(e).splitlines()[0]}") from None
    extras, marker = tuple(sorted(req.extras)), str(req.marker) if req.marker else None
    if req.url:
        return reference(req.url, req.name, extras=extras, marker=marker, **fields)
    return dependency(req.name, str(req.specifier), extras=extras, marker=marker, **fields)


def any_of(markers: Iterable[str]) -> str | None:
    """One marker true when any of ``markers`` is; None when there is none."""
    unique = list(dict.fromkeys(m for m in markers if m))
    if len(unique) < 2:
        return unique[0] if unique else None
    return " or ".join(f"({m})" for m in unique)
