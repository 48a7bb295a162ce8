"""What every manifest parser is, and what it returns.

A parser is one module in this package that defines ``PARSER``, an object with:

* ``name``: the format's name (``requirements``, ``pyproject``, ``uv.lock`` ...);
* ``matches(filename)``: whether a file of that base name is in the format;
* ``parse(text, source, read)``: the dependencies the text declares, and the problems met reading it.

Nothing in a manifest is executed or imported. ``parse`` never raises on malformed input: it reports a
:class:`Problem` and keeps every entry it could read. Adding a format is adding a module here and one line
to ``__init__.py``.
"""
from __future__ import annotations

from typing import Callable, ClassVar, Optional, Protocol, Tuple

from ...record import Record


class Dependency(Record):
    """One entry of a manifest."""

    name: str
    """The name as written in the manifest; empty for a URL or path whose name cannot be told."""
    normalized: str
    """The PEP 503 normalised name."""
    specifier: str
    """The versions allowed, as a PEP 440 specifier set (``"==1.2.3"``, ``"<2,>=1"``); ``""`` for any."""
    version: str | None
    """The exact version when the entry pins one: ``==`` without a wildcard, ``===``, a lock file entry, or a
    URL or path naming a wheel or sdist of the project."""
    line: int | None
    """1-based line of the entry in ``source``; None when the format cannot tell."""
    source: str
    """The file the entry is in: the manifest, or the file an include resolved to."""
    extras: tuple[str, ...] = ()
    """Extras requested (``requests[socks]``), sorted."""
    marker: str | None = None
    """The environment marker, as text (never evaluated)."""
    url: str | None = None
    """The URL, VCS reference or local path the entry comes from; None for a registry requirement."""
    hashes: tuple[str, ...] = ()
    """Hashes the entry is locked to, as ``algorithm:hexdigest``."""
    constraint: bool = False
    """The entry comes from a ``-c`` constraints file: it limits versions, it installs nothing."""


class Problem(Record):
    """Something in a manifest that could not be read."""

    source: str
    """The file the problem is in."""
    line: int | None
    """1-based line, when known."""
    message: str
    """What is wrong, quoting the offending text (shortened)."""


class Manifest(Record):
    """Everything read from one manifest (and the files it includes)."""

    dependencies: tuple[Dependency, ...]
    problems: tuple[Problem, ...]


Reader = Callable[[str, str], Optional[Tuple[str, str]]]
"""``reader(including_source, relative_path) -> (resolved_source, text)``, or None when the file cannot be
read or is outside the scanned tree. Supplied by the caller; ``resolved_source`` names the file in the same
form as the ``source`` given to ``parse`` (it is what includes are told apart by)."""


class ManifestParser(Protocol):
    name: ClassVar[str]

    def matches(self, filename: str) -> bool:
        """Whether a file of this base name is in the parser's format."""
        ...

    def parse(self, text: str, source: str, read: Reader | None = None) -> Manifest:
        """The dependencies ``text`` (the content of ``source``) declares; ``read`` follows includes."""
        ...
