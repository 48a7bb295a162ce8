"""The rule catalog and the other policy data files, read once from the YAML files in this folder."""
from __future__ import annotations

import functools
import json
import os
from typing import Any, Iterator

from ..findings import Severity
from ..record import Record

_HERE = os.path.dirname(os.path.abspath(__file__))
_CACHE = os.path.join(_HERE, "__pycache__")


class Rule(Record):
    """One entry of ``catalog.yaml``."""

    id: str
    """Public, stable id (never renamed)."""
    scanner: str
    """Scanner that emits it."""
    severity: Severity
    """Default severity."""
    title: str
    """Short title."""
    description: str
    """What the rule detects and why it matters."""
    remediation: str
    """What the user should do."""
    cwe: str | None
    """CWE id, e.g. ``CWE-502``."""
    tags: tuple[str, ...]
    """Topics, used by compliance mappings and SARIF."""
    aliases: tuple[str, ...]
    """Older ids that users may still have in their configuration."""
    precision: str = "high"
    """How often a finding of this rule is a true problem (SARIF ``precision``): ``high``, or ``medium`` for
    rules that also fire on legitimate artifacts."""


class Catalog:
    """All rules, by id; aliases resolve to their rule."""

    def __init__(self, rules: list[Rule]):
        self._rules = {r.id: r for r in rules}
        self._aliases = {a: r.id for r in rules for a in r.aliases}

    def __iter__(self) -> Iterator[Rule]:
        return iter(sorted(self._rules.values(), key=lambda r: (r.scanner, r.id)))

    def __len__(self) -> int:
        return len(self._rules)

    def __contains__(self, rule_id: object) -> bool:
        return rule_id in self._rules or rule_id in self._aliases

    def canonical(self, rule_id: str) -> str | None:
        """The current id for ``rule_id`` (itself or the rule it is an alias of), or None when unknown."""
        if rule_id in self._rules:
            return rule_id
        return self._aliases.get(rule_id)

    def __getitem__(self, rule_id: str) -> Rule:
        canonical = self.canonical(rule_id)
        if canonical is None:
            raise KeyError(rule_id)
        return self._rules[canonical]

    def scanners(self) -> list[str]:
        return sorted({r.scanner for r in self._rules.values()})


def load_data(filename: str) -> Any:
    """Parse one YAML data file of this package.

    Parsing YAML (and importing PyYAML) dominates a short scan's start-up, so the parsed data is also kept
    as JSON in this folder's ``__pycache__``, next to the bytecode, under the YAML's SHA-256: a cache that
    does not match the YAML byte for byte is ignored and rewritten, and one that cannot be written is skipped.
    """
    with open(os.path.join(_HERE, filename), "rb") as f:
        raw = f.read()
    from ..engine import sha256  # noqa: PLC0415 - the rules load before any scanning

    digest = sha256(raw)
    cached = os.path.join(_CACHE, f"{filename}.json")
    try:
        with open(cached, encoding="utf-8") as f:
            entry = json.load(f)
        if entry["sha256"] == digest:
            return entry["data"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    import yaml  # noqa: PLC0415 - only when the cache misses
    data = yaml.load(raw.decode("utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    _store(cached, digest, data)
    return data


def _store(path: str, digest: str, data: Any) -> None:
    """Write the JSON cache of ``data`` atomically, if JSON holds it exactly and the folder is writable."""
    text = json.dumps({"sha256": digest, "data": data})
    if json.loads(text)["data"] != data:   # YAML-only types (dates, int keys, ...): no cache
        return
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(_CACHE, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


_REQUIRED = ("id", "scanner", "severity", "title", "description", "remediation")


@functools.lru_cache(maxsize=None)
def catalog() -> Catalog:
    """The rule catalog (parsed once per process)."""
    rules = []
    for entry in load_data("catalog.yaml")["rules"]:
        missing = [k for k in _REQUIRED if not entry.get(k)]
        if missing:
            raise ValueError(f"catalog.yaml: rule {entry.get('id')!r} lacks {', '.join(missing)}")
        rules.append(Rule(
            id=entry["id"], scanner=entry["scanner"], severity=Severity.parse(entry["severity"]),
            title=entry["title"].strip(), description=" ".join(entry["description"].split()),
            remediation=" ".join(entry["remediation"].split()), cwe=entry.get("cwe"),
            tags=tuple(entry.get("tags") or ()), aliases=tuple(entry.get("aliases") or ()),
            precision=entry.get("precision", "high"),
        ))
    return Catalog(rules)
