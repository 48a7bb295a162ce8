"""Policy: what counts as a violation and how severe it is. Built from ``.ml-guard.yml`` (see config.py)."""
from __future__ import annotations

from typing import Any, Mapping

from .findings import Severity
from .record import Record, field

MODES = ("enforce", "warn", "audit")
"""Runtime-guard modes: refuse the load, load and warn, or only record."""


class Policy(Record):
    """Decisions applied to every finding, in the CLI and in the runtime guard alike."""

    fail_on: Severity = Severity.HIGH
    """Lowest severity that fails a scan (CLI exit code 1) or refuses a load (runtime guard)."""
    severity_overrides: Mapping[str, Severity] = field(factory=dict)
    """Rule id -> severity that replaces the catalog default."""
    disabled_rules: frozenset[str] = frozenset()
    """Rule ids that produce no findings."""
    scanners: frozenset[str] | None = None
    """Scanners to run; None runs all."""
    scanner_options: Mapping[str, Mapping[str, Any]] = field(factory=dict)
    """Per-scanner configuration sections (validated against each scanner's ``options``)."""
    mode: str = "enforce"
    """Runtime-guard mode, one of MODES."""
    strict: bool = False
    """Runtime guard: refuse non-allowlisted pickle globals in every unpickling of the process, not only
    inside guarded loads (denylisted globals are refused everywhere in any case)."""
    trusted_sha256: frozenset[str] = frozenset()
    """SHA-256 digests of artifacts pinned as reviewed: they are not scanned."""

    def severity_of(self, rule) -> Severity | None:
        """Effective severity of a catalog rule, or None when the rule is disabled."""
        if rule.id in self.disabled_rules:
            return None
        return self.severity_overrides.get(rule.id, rule.severity)

    def runs(self, scanner: str) -> bool:
        """Whether the named scanner is enabled."""
        return self.scanners is None or scanner in self.scanners
