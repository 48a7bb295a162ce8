"""Secret detection over bytes: the rules of ``rules/secrets.yaml`` run by the secret kernel
(:func:`mlguard.engine.secret_matches`), then placeholders dropped, structures validated and overlaps
resolved. Files, notebooks and findings are the scanner's business (``mlguard/scanners/secrets.py``).
"""
from __future__ import annotations

import functools
import re
from bisect import bisect_left
from typing import Any, Mapping

from ..engine import SecretRule, SecretRuleSet, secret_matches
from ..record import Record, field
from ..rules import load_data
from .redact import redact, secret_hash
from .validators import STRUCTURAL, VALIDATORS, Verdict

__all__ = ["Detector", "Hit", "Rule", "detector", "is_placeholder", "redact", "rules", "secret_hash"]


class Rule(Record):
    """One entry of ``rules/secrets.yaml`` (the file's header documents each field)."""

    id: str
    keywords: tuple[str, ...]
    pattern: str
    """With the macros expanded."""
    window: int = 256
    min_entropy: float = 0.0
    prefix: int = 0
    validator: str | None = None
    contextual: bool = False
    example: Mapping[str, str] = field(factory=dict)
    counterexamples: tuple[str, ...] = ()


@functools.lru_cache(maxsize=None)
def rules() -> tuple[Rule, ...]:
    """Every secret rule, in priority order (parsed once per process)."""
    data = load_data("secrets.yaml")
    macros = data.get("macros") or {}
    out = []
    for entry in data["rules"]:
        pattern = re.sub(r"\{\{(\w+)\}\}", lambda m: macros[m.group(1)], entry["pattern"])
        validator = entry.get("validator")
        if validator is not None and validator not in VALIDATORS:
            raise ValueError(f"secrets.yaml: rule {entry['id']!r} names an unknown validator {validator!r}")
        out.append(Rule(
            id=entry["id"], keywords=tuple(entry["keywords"]), pattern=pattern, window=entry.get("window", 256),
            min_entropy=entry.get("min_entropy", 0.0), prefix=entry.get("prefix", 0), validator=validator,
            contextual=entry.get("contextual", False), example=entry.get("example") or {},
            counterexamples=tuple(entry.get("not") or ()),
        ))
    return tuple(out)


_PLACEHOLDER = re.compile(
    r"example|x{5,}|X{5,}|\*{3,}|\.\.\.|\u2026|[<>]|\$\{|\{\{|\$\(|%\(|placeholder|redacted|chang(?:e_?me|eit)"
    r"|dummy|sample|insert|environ|getenv|process\.env|your[_\-]?(?:api|key|token|secret|pass|own|access)"
    r"|fake[_\-]|[_\-]fake", re.IGNORECASE)


def is_placeholder(body: str) -> bool:
    """Documentation examples and stand-ins (``EXAMPLE``, ``xxxxx``, ``<your-key>``, ``${TOKEN}``, ``$TOKEN``,
    ``os.environ[...]``), and bodies with 3 distinct characters or fewer, or mostly ascending runs
    (``abcdef``, ``123456``). ``body`` is the secret without its fixed prefix."""
    if not body or body[0] in "$%" or _PLACEHOLDER.search(body) or len(set(body)) <= 3:
        return True
    steps = [ord(b) - ord(a) for a, b in zip(body, body[1:])]
    return sum(step == 1 for step in steps) >= len(steps) / 2


class Hit(Record):
    """One secret found in the bytes: a rule's match that survived the checks."""

    rule: Rule
    start: int
    """Offset of the whole match."""
    end: int
    secret_start: int
    """Offsets of the secret (the pattern's ``secret`` group)."""
    secret_end: int
    secret: str = field(repr=False)
    """The secret itself (decoded with replacement characters): never shown, only redacted."""
    key: str
    """:func:`secret_hash` of the secret's bytes."""
    entropy: float
    verdict: Verdict

    @property
    def snippet(self) -> str:
        return redact(self.secret, self.rule.prefix)


class Detector:
    """A set of rules compiled once; :meth:`find` is safe to call from several threads."""

    def __init__(self, selected: tuple[Rule, ...]):
        self.rules = selected
        self.ruleset = SecretRuleSet([SecretRule(r.id, r.keywords, r.pattern, r.window, r.min_entropy)
                                      for r in selected])

    def find(self, data) -> list[Hit]:
        """Every secret in ``data`` (a bytes-like object), in offset order. Where secrets of several rules
        overlap, the rule listed first in secrets.yaml wins."""
        checked = [(m["rule"], hit) for m in secret_matches(data, self.ruleset)
                   for hit in [self._check(data, m)] if hit]
        checked.sort(key=lambda pair: (pair[0], pair[1].secret_start))   # rule index = priority
        starts: list[int] = []
        kept: list[Hit] = []   # sorted by secret_start, never overlapping
        for _, hit in checked:
            i = bisect_left(starts, hit.secret_start)
            if ((i and kept[i - 1].secret_end > hit.secret_start)
                    or (i < len(kept) and kept[i].secret_start < hit.secret_end)):
                continue
            starts.insert(i, hit.secret_start)
            kept.insert(i, hit)
        return kept

    def _check(self, data, m: Mapping[str, Any]) -> Hit | None:
        rule = self.rules[m["rule"]]
        raw = bytes(data[m["secret_start"]:m["secret_end"]])
        secret = raw.decode("utf-8", "replace")
        structural = rule.validator in STRUCTURAL
        if not structural and is_placeholder(secret[rule.prefix:]):
            return None
        verdict: Verdict | None = Verdict()
        if rule.validator:
            match = bytes(data[m["start"]:m["end"]]).decode("utf-8", "replace")
            try:
                verdict = VALIDATORS[rule.validator](secret, match)
            except Exception:  # a validator bug must neither hide the secret nor echo it in a traceback
                verdict = Verdict(note="its structure could not be checked")
        if verdict is None:
            return None
        return Hit(rule=rule, start=m["start"], end=m["end"], secret_start=m["secret_start"],
                   secret_end=m["secret_end"], secret=secret, key=secret_hash(raw), entropy=m["entropy"],
                   verdict=verdict)


@functools.lru_cache(maxsize=None)
def detector(shape_only: bool = False) -> Detector:
    """The detector of every rule, or (``shape_only``) of the rules that are not ``contextual``."""
    return Detector(tuple(r for r in rules() if not (shape_only and r.contextual)))
