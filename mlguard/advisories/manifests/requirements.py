"""pip requirements files.

Matched by name: any ``.txt`` or ``.in`` (pip-compile input) file whose name holds ``requirement`` or
``constraint`` (``requirements.txt``, ``requirements-dev.txt``, ``dev-requirements.txt``, ``constraints.txt``,
``requirements.in``). Files with other names (``requirements/base.txt``) are read when a matched file
includes them.

pip's syntax: ``\\`` continuations, comments, option lines (skipped), ``-r``/``-c`` includes (followed
through the caller's reader, at most ``MAX_DEPTH`` deep and ``MAX_INCLUDES`` in all, each file once),
``--hash`` options (kept), ``-e`` editables, PEP 508 requirements, and URLs, VCS references and local paths
(named by ``#egg=`` or by their wheel or sdist file name). ``${VAR}`` references are not expanded.
"""
from __future__ import annotations

import itertools
import re
import shlex
from typing import ClassVar, Iterable, Iterator

from packaging.markers import Marker
from packaging.requirements import Requirement

from ._entries import MAX_ENTRIES, reference, requirement, shorten
from .interface import Dependency, Manifest, Problem, Reader

MAX_DEPTH = 10
"""Includes nested deeper than this are not followed."""
MAX_INCLUDES = 100
"""Includes followed in one parse."""
MAX_QUOTED = 10_000
"""Longest option text with quotes or backslashes read (``shlex`` takes time quadratic in a word's length)."""

_NAME = re.compile(r".*(requirement|constraint).*\.(txt|in)", re.I)
_COMMENT = re.compile(r"(?:^|(?<=\s))#.*")
_COMMENT_LINE = re.compile(r"\s*#")
_URL = re.compile(r"(?:(?:git|hg|svn|bzr)\+[a-z+-]+|https?|file|ftp|sftp|ssh|git|hg|svn|bzr):", re.I)
_ARCHIVES = (".whl", ".zip", ".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tbz", ".tar.xz", ".txz", ".tar.lz",
             ".tlz", ".tar.lzma")
_EGG = re.compile(r"[#&]egg=([^&]*)")
_EXTRAS = re.compile(r"(.+)(\[[^\]]*\])")
_SHORT = {"-r": "--requirement", "-c": "--constraint", "-e": "--editable", "-i": "--index-url",
          "-f": "--find-links", "-C": "--config-settings"}
_FLAGS = frozenset({"--no-index", "--prefer-binary", "--require-hashes", "--pre"})
_VALUED = frozenset({*_SHORT.values(), "--extra-index-url", "--no-binary", "--only-binary", "--trusted-host",
                     "--use-feature", "--hash", "--global-option"})


class RequirementsParser:
    name: ClassVar[str] = "requirements"

    def matches(self, filename: str) -> bool:
        return _NAME.fullmatch(filename) is not None

    def parse(self, text: str, source: str, read: Reader | None = None) -> Manifest:
        return parse_lines(enumerate(text.splitlines(), 1), source, read)


PARSER = RequirementsParser()


def parse_lines(numbered: Iterable[tuple[int, str]], source: str, read: Reader | None) -> Manifest:
    """The entries of the requirement lines ``(line number, text)`` of ``source`` and of what they include."""
    walk = _Walk(read, source)
    walk.file(numbered, source, False, (source,))
    return Manifest(tuple(walk.dependencies), tuple(walk.problems))


def logical_lines(numbered: Iterable[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    """pip's lines: continuations joined (numbered by their first line), comments and blank lines dropped."""
    first, parts = None, []
    for number, text in itertools.chain(numbered, [(0, "")]):  # the empty last line ends a continuation
        first = number if first is None else first
        if text.endswith("\\") and not _COMMENT_LINE.match(text):
            parts.append(text[:-1])
            continue
        parts.append(text)
        line = _COMMENT.sub("", "".join(parts)).strip()
        if line:
            yield first, line
        first, parts = None, []


class _Walk:
    """One parse: the entries and problems of the files met so far."""

    def __init__(self, read: Reader | None, source: str):
        self.read = read
        self.dependencies: list[Dependency] = []
        self.problems: list[Problem] = []
        self.seen = {(source, False)}
        self.includes = self.lines = 0

    def file(self, numbered: Iterable[tuple[int, str]], source: str, constraint: bool,
             chain: tuple[str, ...]) -> None:
        for line, text in logical_lines(numbered):
            self.lines += 1
            if self.lines > MAX_ENTRIES:
                self.problems.append(Problem(source, line, f"not read: more than {MAX_ENTRIES:,} lines"))
                return
            try:
                self._line(text, source, line, constraint, chain)
            except ValueError as e:
                self.problems.append(Problem(source, line, str(e)))

    def _line(self, text: str, source: str, line: int, constraint: bool, chain: tuple[str, ...]) -> None:
        tokens = text.split()
        first_option = next((i for i, t in enumerate(tokens) if t.startswith("-")), len(tokens))
        args = " ".join(tokens[:first_option])
        options = _options(_words(" ".join(tokens[first_option:])))
        fields = dict(line=line, source=source, constraint=constraint)
        if args:  # a requirement, and its own options
            hashes = tuple(value for name, value in options if name == "--hash")
            self.dependencies.append(_requirement(args, hashes=hashes, **fields))
            return
        for name, value in options:
            if name == "--editable":
                self.dependencies.append(_reference(value, **fields))
            elif name in ("--requirement", "--constraint"):
                self._include(value, name == "--constraint", source, line, chain)

    def _include(self, target: str, constraint: bool, source: str, line: int, chain: tuple[str, ...]) -> None:
        what = f"{'-c' if constraint else '-r'} {shorten(target)}"
        if self.read is None:
            raise ValueError(f"{what} not followed: no reader given")
        if len(chain) > MAX_DEPTH:
            raise ValueError(f"{what} not followed: includes nested more than {MAX_DEPTH} deep")
        self.includes += 1
        if self.includes > MAX_INCLUDES:
            raise ValueError(f"{what} not followed: more than {MAX_INCLUDES} includes")
        found = self.read(source, target)
        if found is None:
            raise ValueError(f"{what}: cannot read the included file")
        resolved, text = found
        if resolved in chain:
            raise ValueError(f"{what}: include cycle {' -> '.join(chain + (resolved,))}")
        if (resolved, constraint) not in self.seen:
            self.seen.add((resolved, constraint))
            self.file(enumerate(text.splitlines(), 1), resolved, constraint, chain + (resolved,))


def _words(options: str) -> list[str]:
    """Option text split into words as pip splits it (with ``shlex``, when quotes or escapes need it)."""
    if not any(c in options for c in "'\"\\"):
        return options.split()
    if len(options) > MAX_QUOTED:
        raise ValueError(f"options with quotes longer than {MAX_QUOTED} characters are not read")
    try:
        return shlex.split(options)
    except ValueError as e:
        raise ValueError(f"cannot split the options {shorten(options)}: {e}") from None


def _options(tokens: list[str]) -> list[tuple[str, str | None]]:
    """(long option name, value) pairs; ValueError for an unknown option, a missing value or a stray word."""
    options, rest = [], iter(tokens)
    for token in rest:
        if token.startswith("--"):
            name, eq, value = token.partition("=")
            value = value if eq else None
        elif token.startswith("-"):
            name, value = _SHORT.get(token[:2], token[:2]), token[2:] or None
        else:
            raise ValueError(f"unexpected {shorten(token)} after an option")
        if name in _VALUED and value is None:
            value = next(rest, None)
            if value is None:
                raise ValueError(f"option {name} needs a value")
        elif name not in _FLAGS | _VALUED:
            raise ValueError(f"unknown option {shorten(name)}")
        options.append((name, value))
    return options


def _requirement(text: str, **fields) -> Dependency:
    return _reference(text, **fields) if _is_reference(text) else requirement(text, **fields)


def _is_reference(text: str) -> bool:
    """Whether a requirement is a URL or a local path rather than PEP 508 (pip's rule, without looking at
    the file system: a path has a slash, starts with a dot or names an archive)."""
    if _URL.match(text):
        return True
    head = text.split(";", 1)[0].strip()
    if "@" in head and not _looks_like_path(head.split("@", 1)[0]):
        return False  # name @ url
    return _looks_like_path(head) or head.lower().endswith(_ARCHIVES)


def _looks_like_path(text: str) -> bool:
    return "/" in text or "\\" in text or text.startswith(".")


def _reference(text: str, **fields) -> Dependency:
    """A URL or path requirement: ``location[extras] ; marker`` (URLs need the space before ``;``)."""
    location, _, marker = text.partition("; " if _URL.match(text) else ";")
    location, extras, name = location.strip(), set(), ""
    bracketed = None if _URL.match(location) else _EXTRAS.fullmatch(location)
    try:
        if bracketed:
            location, extras = bracketed[1], set(Requirement(f"x{bracketed[2]}").extras)
        egg = _EGG.search(location)
        if egg:
            req = Requirement(egg[1])
            name, extras = req.name, extras | req.extras
        marker = str(Marker(marker)) if marker.strip() else None
    except ValueError as e:
        raise ValueError(f"cannot parse {shorten(text)}: {str(e).splitlines()[0]}") from None
    return reference(location, name, extras=tuple(sorted(extras)), marker=marker, **fields)
