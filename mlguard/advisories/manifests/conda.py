"""Conda environment files: ``environment.yml``/``.yaml``, and ``environment-<name>.yml``, ``<name>-environment.yml``.

Every conda package of ``dependencies`` is an entry under its conda name (the ``channel::`` prefix dropped),
for the caller to match against PyPI by name. Versions as conda reads them: ``name=1.2`` allows ``1.2.*``,
``name==1.2.3``, ``name=1.2.3=build`` and ``name 1.2.3 build`` pin ``1.2.3``, ``name>=1.2,<2`` is a range;
a ``|`` union, or a range PEP 440 cannot read, allows any version (a pin PEP 440 cannot read uses ``===``).
The ``pip:`` list is read as requirements-file lines, includes and options included.

The YAML is composed (nodes with their lines), never constructed, with PyYAML's safe loader, once its nesting
is known to be at most ``MAX_DEPTH``; a node reached twice through aliases is read once.
"""
from __future__ import annotations

import re
from typing import ClassVar

import yaml
from packaging.specifiers import InvalidSpecifier, SpecifierSet

from ._entries import Problems, dependency, exact, shorten
from .interface import Dependency, Manifest, Reader
from .requirements import parse_lines

MAX_DEPTH = 64
"""Deeper YAML is not read: PyYAML's C composer recurses without a limit (some builds crash on deep input)."""

_NAME = re.compile(r"(.*[-_.])?environment([-_.].*)?\.ya?ml", re.I)
_SPEC = re.compile(r"(?:\S*::)?(?P<name>[^\s=<>!~\[|,]+)\s*(?P<rest>.*)", re.S)
_BRACKET_VERSION = re.compile(r"""\[.*?\bversion\s*=\s*(?:["']([^"']*)["']|([^\],]*))""")
_TERM = re.compile(r"(==|!=|>=|<=|~=|<|>|=)?\s*(.*)")
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class CondaParser:
    name: ClassVar[str] = "conda"

    def matches(self, filename: str) -> bool:
        return _NAME.fullmatch(filename) is not None

    def parse(self, text: str, source: str, read: Reader | None = None) -> Manifest:
        problems, dependencies = Problems(source), []
        items = _value(_compose(text, problems), "dependencies")
        if items is not None and not isinstance(items, yaml.SequenceNode):
            problems.add(_line(items), "'dependencies' is not a list")
            items = None
        seen: set[int] = set()  # nodes read, by id: an alias is the node it names
        for item in problems.entries(items.value if items is not None else ()):
            pip = _value(item, "pip")
            if id(item) in seen or id(pip) in seen:
                continue
            seen.update(id(node) for node in (item, pip) if node is not None)
            if isinstance(item, yaml.ScalarNode) and item.value:
                try:
                    dependencies.append(_package(item.value, line=_line(item), source=source))
                except ValueError as e:
                    problems.add(_line(item), str(e))
            elif isinstance(pip, yaml.SequenceNode):
                lines = []
                for node in pip.value:
                    if isinstance(node, yaml.ScalarNode):
                        lines.append((_line(node), node.value))
                    else:
                        problems.add(_line(node), "a 'pip' entry is not a string")
                found = parse_lines(lines, source, read)
                dependencies += found.dependencies
                problems += found.problems
            else:
                problems.add(_line(item), "a 'dependencies' entry is neither a package nor a 'pip' list")
        return Manifest(tuple(dependencies), tuple(problems))


PARSER = CondaParser()


def _compose(text: str, problems: Problems) -> yaml.Node | None:
    try:
        deep = _too_deep(text)
        if deep is None:
            return yaml.compose(text, Loader=_LOADER)
        problems.add(_line(deep), f"not read: YAML nested more than {MAX_DEPTH} deep")
    except yaml.MarkedYAMLError as e:
        line = e.problem_mark.line + 1 if e.problem_mark else None
        problems.add(line, f"not valid YAML: {e.problem or e.context}")
    except (yaml.YAMLError, ValueError, RecursionError) as e:  # ValueError: text libyaml cannot encode
        problems.add(None, f"not valid YAML: {shorten(str(e))}")
    return None


def _too_deep(text: str) -> yaml.Event | None:
    """The first collection nested deeper than ``MAX_DEPTH``, found with the event parser (which keeps its
    own stack instead of recursing)."""
    depth = 0
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                return event
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    return None


def _value(node: yaml.Node | None, key: str) -> yaml.Node | None:
    """The value of ``key`` when ``node`` is a mapping holding it."""
    if not isinstance(node, yaml.MappingNode):
        return None
    return next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == key), None)


def _line(node: yaml.Node | yaml.Event) -> int:
    return node.start_mark.line + 1


def _package(spec: str, **fields) -> Dependency:
    """A conda match spec: ``[channel::]name[ version[ build]]``, ``name=version[=build]``,
    ``name==version``, ``name>=a,<b`` or ``name[version='...']``."""
    match = _SPEC.fullmatch(spec.strip())
    if match is None:
        raise ValueError(f"cannot parse conda package {shorten(spec)}")
    return dependency(match["name"], conda_specifier(match["rest"]), **fields)


def conda_specifier(rest: str) -> str:
    """The PEP 440 specifier set of what follows a conda package name (version, then build string)."""
    rest, fuzzy = rest.strip(), False
    if rest.startswith("["):
        bracketed = _BRACKET_VERSION.match(rest)
        version = (bracketed[1] or bracketed[2]) if bracketed else ""
    elif rest.startswith("=") and not rest.startswith("=="):  # =1.2 is 1.2.*; =1.2=build is exact
        version, _, build = rest[1:].partition("=")
        fuzzy = not build
    elif " " in rest:  # "1.2.3 build"
        version = rest.split()[0]
    else:  # "==1.2.3", ">=1,<2", "==1.2.3=build"
        version = re.sub(r"(?<=[^=<>!~])=[^=<>!~,|]*\Z", "", rest)
    if "|" in version:
        return ""
    terms = [_TERM.fullmatch(t.strip()).groups() for t in version.split(",") if t.strip()]
    if len(terms) == 1 and terms[0][0] in (None, "==") and not fuzzy and "*" not in terms[0][1]:
        return exact(terms[0][1])
    specs = []
    for operator, value in terms:
        if value.rstrip(".*") == "":
            continue
        if value.endswith("*") or operator == "=" or (operator is None and fuzzy):
            specs.append(f"{'!=' if operator == '!=' else '=='}{value.rstrip('.*')}.*")
        else:
            specs.append(f"{operator or '=='}{value}")
    try:
        return str(SpecifierSet(",".join(specs)))
    except InvalidSpecifier:
        return ""
