"""``pyproject.toml``: PEP 621 dependencies and optional dependencies, PEP 735 dependency groups, and Poetry's
``tool.poetry`` dependency tables (``dependencies``, ``dev-dependencies``, ``group.<name>.dependencies``).

Poetry constraints become PEP 440 specifiers: ``^1.2.3`` is ``>=1.2.3,<2.0.0``, ``^0.2.3`` is
``>=0.2.3,<0.3.0``, ``~1.2`` is ``>=1.2,<1.3``, ``1.2.3`` is ``==1.2.3``, ``1.2.*`` is ``==1.2.*``, ``*``
is any version; a ``||`` union, which no specifier set can express, allows any version too. Poetry's
``python`` entry is not a dependency. Lines are found by a text search (``_tables.TextIndex``).
"""
from __future__ import annotations

import re
from typing import Any, ClassVar

from packaging.markers import Marker
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from ._entries import Problems, dependency, field, reference, requirement, shorten, strings
from ._tables import TextIndex, load_toml
from .interface import Dependency, Manifest, Reader

_OPERATOR = r"\^|~=|~|===|==|!=|<=|>=|<|>|="


class PyprojectParser:
    name: ClassVar[str] = "pyproject"

    def matches(self, filename: str) -> bool:
        return filename == "pyproject.toml"

    def parse(self, text: str, source: str, read: Reader | None = None) -> Manifest:
        problems = Problems(source)
        document = _Document(text, source, problems)
        data = load_toml(text, problems)
        document.pep621(data)
        document.groups(data)
        document.poetry(data)
        return Manifest(tuple(document.dependencies), tuple(problems))


PARSER = PyprojectParser()


class _Document:
    """One pyproject.toml being read: its text index, the entries and problems found so far."""

    def __init__(self, text: str, source: str, problems: Problems):
        self.index, self.source, self.problems = TextIndex(text), source, problems
        self.dependencies: list[Dependency] = []

    def pep621(self, data: dict[str, Any]) -> None:
        project = self.problems.expect(data.get("project"), dict, "[project]") or {}
        self._strings(project.get("dependencies"), "project.dependencies", "project", "dependencies")
        extras = project.get("optional-dependencies")
        for extra, items in (self.problems.expect(extras, dict, "project.optional-dependencies") or {}).items():
            self._strings(items, f"project.optional-dependencies.{extra}", "project.optional-dependencies", extra)

    def groups(self, data: dict[str, Any]) -> None:
        """PEP 735 groups: each group's own requirements; includes of unknown groups and cycles are problems."""
        groups = self.problems.expect(data.get("dependency-groups"), dict, "[dependency-groups]") or {}
        known = {canonicalize_name(group) for group in groups}
        includes: dict[str, list[str]] = {}
        for group, items in groups.items():
            line = self.index.line(self.index.anchor("dependency-groups", group))
            items = self.problems.expect(items, list, f"dependency group {group!r}", line) or []
            for item in items:
                if not (isinstance(item, dict) and "include-group" in item):
                    continue
                target = item["include-group"]
                if isinstance(target, str) and canonicalize_name(target) in known:
                    includes.setdefault(canonicalize_name(group), []).append(canonicalize_name(target))
                else:
                    self.problems.add(line, f"dependency group {group!r} includes {shorten(repr(target))}, "
                                            "which is not a group")
            self._strings([i for i in items if not isinstance(i, dict) or "include-group" not in i],
                          f"dependency-groups.{group}", "dependency-groups", group)
        cycle = _cycle(includes)
        if cycle:
            around = " -> ".join(cycle if len(cycle) < 20 else [*cycle[:19], "...", cycle[-1]])
            self.problems.add(self.index.line(self.index.anchor("dependency-groups", cycle[0])),
                              f"dependency groups include each other: {around}")

    def poetry(self, data: dict[str, Any]) -> None:
        tool = self.problems.expect(data.get("tool"), dict, "[tool]") or {}
        poetry = self.problems.expect(tool.get("poetry"), dict, "[tool.poetry]") or {}
        tables = [(f"tool.poetry.{key}", poetry.get(key)) for key in ("dependencies", "dev-dependencies")]
        for group, body in (self.problems.expect(poetry.get("group"), dict, "[tool.poetry.group]") or {}).items():
            body = self.problems.expect(body, dict, f"[tool.poetry.group.{group}]") or {}
            tables.append((f"tool.poetry.group.{group}.dependencies", body.get("dependencies")))
        for where, table in tables:
            at = self.index.anchor(where)
            table = self.problems.expect(table, dict, f"[{where}]") or {}
            for name, value in self.problems.entries(table.items()):
                if name.lower() == "python":
                    continue
                found = self.index.find("key", name, at)
                line = self.index.line(found if found is not None else self.index.find("header", f"{where}.{name}"))
                for constraint in value if isinstance(value, list) else [value]:
                    try:
                        self.dependencies.append(_poetry(name, constraint, line=line, source=self.source))
                    except ValueError as e:
                        self.problems.add(line, f"{where}.{name}: {e}")

    def _strings(self, items: Any, what: str, table: str, *keys: str) -> None:
        """The requirement strings of the array ``items``, found in the text after ``table`` and ``keys``."""
        at = self.index.anchor(table, *keys)
        for item in self.problems.entries(self.problems.expect(items, list, what, self.index.line(at)) or ()):
            if not isinstance(item, str):
                self.problems.add(self.index.line(at), f"{what}: {shorten(repr(item))} is not a requirement string")
                continue
            found = self.index.find("string", item, at)
            at = at if found is None else found + 1
            try:
                self.dependencies.append(requirement(item, line=self.index.line(found), source=self.source))
            except ValueError as e:
                self.problems.add(self.index.line(found), str(e))


def _poetry(name: str, value: Any, **fields: Any) -> Dependency:
    """One Poetry dependency: a constraint string, or a table with ``version``, ``extras``, ``markers`` and
    ``git``/``url``/``path``/``file``."""
    if isinstance(value, str):
        return dependency(name, poetry_specifier(value), **fields)
    if not isinstance(value, dict):
        raise ValueError(f"{shorten(repr(value))} is neither a constraint nor a table")
    version, markers = field(value, "version", str, "*"), field(value, "markers", str, "")
    extras = tuple(sorted(strings(value, "extras")))
    marker = str(Marker(markers)) if markers else None
    location = next((field(value, key, str) for key in ("git", "url", "path", "file") if key in value), None)
    if location:
        return reference(location, name, extras=extras, marker=marker, **fields)
    return dependency(name, poetry_specifier(version), extras=extras, marker=marker, **fields)


def poetry_specifier(constraint: str) -> str:
    """The PEP 440 specifier set of a Poetry version constraint; ValueError when it is not one."""
    if "|" in constraint:
        return ""
    specs = []
    for term in re.split(r"[\s,]+", re.sub(rf"({_OPERATOR})\s+", r"\1", constraint.strip())):
        operator, version = re.fullmatch(rf"({_OPERATOR})?(.*)", term).groups()
        if operator in ("^", "~"):
            specs += [f">={version}", f"<{_upper(version, operator == '^')}"]
        elif operator in (None, "=", "=="):
            specs += [f"=={version}"] if version not in ("", "*") else []
        else:
            specs.append(operator + version)
    try:
        return str(SpecifierSet(",".join(specs)))
    except InvalidSpecifier:
        raise ValueError(f"cannot convert Poetry constraint {shorten(constraint)}") from None


def _upper(version: str, caret: bool) -> str:
    """Poetry's exclusive upper bound, at the precision written: ``^`` bumps the first non-zero of the major,
    minor and patch parts (the last given when all are zero), ``~`` the minor part (the major when alone)."""
    parsed = Version(version)
    release = parsed.release
    if caret:
        last = min(len(release) - 1, 2)
        k = next((i for i, part in enumerate(release[:last]) if part), last)
    else:
        k = 0 if len(release) == 1 else 1
    upper = ".".join(map(str, (*release[:k], release[k] + 1, *(0,) * (len(release) - k - 1))))
    return f"{parsed.epoch}!{upper}" if parsed.epoch else upper


def _cycle(includes: dict[str, list[str]]) -> list[str] | None:
    """A cycle of the include graph, as the groups around it; None when there is none (depth-first, without
    recursion)."""
    done: set[str] = set()
    for root in includes:
        if root in done:
            continue
        path, on_path, stack = [root], {root}, [iter(includes.get(root, ()))]
        while stack:
            child = next(stack[-1], None)
            if child is None:
                on_path.discard(path[-1])
                done.add(path.pop())
                stack.pop()
            elif child in on_path:
                return path[path.index(child):] + [child]
            elif child not in done:
                path.append(child)
                on_path.add(child)
                stack.append(iter(includes.get(child, ())))
    return None
