"""TOML and JSON documents: loading without raising, and best-effort line numbers (their parsers give none)."""
from __future__ import annotations

import bisect
import json
import re
from typing import Any, Callable, Iterator

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

from ._entries import Problems
from .interface import Dependency, Manifest

MAX_KEY_PARTS = 64
"""Documents with a dotted key of more parts are not read: tomllib takes time quadratic in their number."""

_AT_LINE = re.compile(r"\(at line (\d+), column \d+\)")
_PART = r"""(?:[\w-]+|"[^"\n]*"|'[^'\n]*')"""
_LONG_KEY = re.compile(rf"(?<![\w-]){_PART}(?:[ \t]*\.[ \t]*{_PART}){{{MAX_KEY_PARTS},}}")


def load_toml(text: str, problems: Problems, first_line: int = 1) -> dict[str, Any]:
    """The document ``text`` (which starts at ``first_line`` of the file), or {} and a problem."""
    long_key = _LONG_KEY.search(text)
    if long_key:
        line = first_line + text.count("\n", 0, long_key.start())
        problems.add(line, f"not read: a dotted key or table name of more than {MAX_KEY_PARTS} parts")
        return {}
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        at = _AT_LINE.search(str(e))
        problems.add(first_line + int(at.group(1)) - 1 if at else None, f"not valid TOML: {e}")
    except RecursionError:
        problems.add(first_line, "not valid TOML: nested too deeply")
    return {}


def load_json(text: str, problems: Problems) -> Any:
    """The document ``text``, or None and a problem."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        problems.add(e.lineno, f"not valid JSON: {e.msg}")
    except RecursionError:
        problems.add(None, "not valid JSON: nested too deeply")
    return None


def read_lock(text: str, source: str, array: str, entry: Callable[..., Dependency | None]) -> Manifest:
    """The entries of a TOML lock file: ``entry(table, line=..., source=...)`` for each table of its
    ``[[array]]`` (None skips one, ValueError is a problem with the entry)."""
    problems, dependencies = Problems(source), []
    for line, table in problems.entries(_sections(text, array, problems)):
        try:
            found = entry(table, line=line, source=source)
        except ValueError as e:
            problems.add(line, f"{array} entry: {e}")
            continue
        if found is not None:
            dependencies.append(found)
    return Manifest(tuple(dependencies), tuple(problems))


def _sections(text: str, array: str, problems: Problems) -> Iterator[tuple[int | None, dict[str, Any]]]:
    """The tables of ``[[array]]``, each with the line of its ``name`` key.

    Each ``[[array]]`` section is parsed on its own, so a broken one loses only itself (lock files write
    every entry as such a section). Entries of an inline array before the first section have no line.
    """
    header = re.compile(rf"^[ \t]*\[\[[ \t]*{re.escape(array)}[ \t]*\]\][ \t]*(?:#.*)?\r?$", re.M)
    starts = [m.start() for m in header.finditer(text)]
    line = 1
    for i, (start, end) in enumerate(zip([0, *starts], [*starts, len(text)])):
        chunk = text[start:end]
        at = None
        if i:
            name = re.search(r"^[ \t]*name[ \t]*=", chunk, re.M)
            at = line + chunk.count("\n", 0, name.start()) if name else line
        tables = load_toml(chunk, problems, line).get(array)
        for table in problems.expect(tables, list, f"{array!r} at line {line}", line) or ():
            if problems.expect(table, dict, f"an entry of {array!r} at line {line}", line) is not None:
                yield at, table
        line += chunk.count("\n")


_TOKEN = re.compile(r"""
      \#[^\n]*                                                    # comment
    | ^[ \t]*\[(?P<header>\[?[^\[\]\n]*\]?)\]                     # [table] or [[array]] header
    | "(?P<dq>(?:[^"\\\n]|\\.)*)"(?P<dqkey>[ \t]*[=:])?           # basic string, or key
    | '(?P<sq>[^'\n]*)'(?P<sqkey>[ \t]*=)?                        # literal string, or key
    | (?<![\w.-])(?P<bare>[\w.-]+)(?=[ \t]*=)                     # bare or dotted key
    """, re.M | re.X)


class TextIndex:
    """Where keys, string values and table headers are in a TOML or JSON text, found in one pass.

    Strings with escapes other than JSON's are looked up as written; anything not found has no line.
    """

    def __init__(self, text: str):
        self._newlines = [m.start() for m in re.finditer("\n", text)]
        self._at: dict[tuple[str, str], list[int]] = {}
        for m in _TOKEN.finditer(text):
            if m["header"] is not None:
                name = ".".join(part.strip().strip("\"'") for part in m["header"].strip("[]").split("."))
                self._add("header", name, m.start())
            elif m["bare"] is not None:
                for key in {m["bare"], *m["bare"].split(".")}:
                    self._add("key", key, m.start())
            elif m["dq"] is not None:
                self._add("key" if m["dqkey"] else "string", _unescape(m["dq"]), m.start())
            elif m["sq"] is not None:
                self._add("key" if m["sqkey"] else "string", m["sq"], m.start())

    def _add(self, kind: str, text: str, offset: int) -> None:
        self._at.setdefault((kind, text), []).append(offset)

    def find(self, kind: str, text: str, after: int = 0) -> int | None:
        """Offset of the first ``kind`` (``key``, ``string`` or ``header``) spelled ``text`` at or after ``after``."""
        offsets = self._at.get((kind, text), [])
        i = bisect.bisect_left(offsets, after)
        return offsets[i] if i < len(offsets) else None

    def anchor(self, table: str, *keys: str) -> int:
        """Best guess of where the value at ``table`` then ``keys`` starts: after the ``[table]`` header (or
        a header of a parent table), then after each key found in turn."""
        parts, keys, at = table.split("."), list(keys), None
        while parts and at is None:
            at = self.find("header", ".".join(parts))
            if at is None:
                keys.insert(0, parts.pop())
        at = at or 0
        for key in keys:
            found = self.find("key", key, at)
            at = at if found is None else found
        return at

    def line(self, offset: int | None) -> int | None:
        """1-based line of ``offset``."""
        return None if offset is None else bisect.bisect_left(self._newlines, offset) + 1


def _unescape(raw: str) -> str:
    if "\\" not in raw:
        return raw
    try:
        return json.loads(f'"{raw}"')
    except ValueError:
        return raw
