"""Findings, severities and scan results: the values every scanner produces and every report consumes."""
from __future__ import annotations

import enum
from typing import Any, Mapping

from .record import Record, field


class Severity(str, enum.Enum):
    """How bad a finding is. Ordered: ``Severity.CRITICAL > Severity.HIGH``."""

    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]

    @classmethod
    def parse(cls, value: str) -> "Severity":
        """Parse a user-supplied severity name; raises ValueError naming the accepted values."""
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            names = ", ".join(s.value for s in cls)
            raise ValueError(f"unknown severity {value!r} (expected one of: {names})") from None

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank < other.rank

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank <= other.rank

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank > other.rank

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank >= other.rank


_RANK = {s: i for i, s in enumerate(Severity)}
SEVERITIES_DESCENDING = tuple(reversed(Severity))


class Location(Record):
    """Where in a file a finding is."""

    line: int | None = None
    """1-based line, for text files."""
    column: int | None = None
    """1-based column, for text files."""
    offset: int | None = None
    """Byte offset, for binary files (within ``member`` when set)."""
    member: str | None = None
    """Path of the archive member (``!``-joined when nested), e.g. ``archive/data.pkl``."""

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "column": self.column, "offset": self.offset, "member": self.member}

    def describe(self) -> str:
        """Compact human form: ``archive/data.pkl@0x2a1``, ``offset 0x2a1`` or ``line 3:7``."""
        where = self.member or ""
        if self.offset is not None:
            where += f"@0x{self.offset:x}" if where else f"offset 0x{self.offset:x}"
        if self.line is not None:
            where += (" " if where else "") + f"line {self.line}" + (f":{self.column}" if self.column else "")
        return where


class Finding(Record):
    """One problem found in one place."""

    rule_id: str
    """Public, stable rule id from the catalog (``docs/rules.md``)."""
    severity: Severity
    """Effective severity, after the policy's overrides."""
    scanner: str
    """Name of the scanner that produced it."""
    message: str
    """One human sentence: what is wrong here."""
    path: str
    """File path relative to the scan root (the file name when a single file is scanned)."""
    location: Location = field(factory=Location)
    """Position in the file."""
    snippet: str | None = None
    """Short excerpt; secrets are always redacted."""
    evidence: Mapping[str, Any] = field(factory=dict)
    """Structured facts behind the finding (module/name, package/version/advisory, ...)."""
    fingerprint: str = ""
    """Stable id across runs, for baselines and SARIF ``partialFingerprints``."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "severity": self.severity.value,
            "scanner": self.scanner,
            "message": self.message,
            "path": self.path,
            "location": self.location.to_dict(),
            "snippet": self.snippet,
            "evidence": dict(self.evidence),
            "fingerprint": self.fingerprint,
        }

    def sort_key(self) -> tuple:
        loc = self.location
        return (self.path, loc.member or "", loc.line or 0, loc.offset or 0, -self.severity.rank, self.rule_id,
                self.message)


def fingerprint(rule_id: str, path: str, member: str | None, key: str) -> str:
    """Stable fingerprint of a finding: same rule, file, member and scanner-chosen key give the same value."""
    from .engine import sha256

    text = "\x1f".join((rule_id, path, member or "", key))
    return sha256(text.encode("utf-8", "surrogatepass"))[:32]


class ScanError(Record):
    """A failure of ML Guard itself while scanning a file (also reported as a finding)."""

    path: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}


class ScanResult(Record):
    """Everything one scan produced."""

    root: str
    """What was scanned, as the user named it."""
    findings: tuple[Finding, ...] = ()
    """All findings, in deterministic order (path, member, position, severity)."""
    files_scanned: int = 0
    """Number of files whose content was examined."""
    duration_seconds: float = 0.0
    """Wall-clock time of the scan."""
    errors: tuple[ScanError, ...] = ()
    """Internal failures (each also appears as a ``scanner-error`` finding)."""
    engine: str = ""
    """Which kernel engine ran (``native`` or ``python``)."""

    @property
    def summary(self) -> dict[str, int]:
        counts = {s.value: 0 for s in SEVERITIES_DESCENDING}
        for f in self.findings:
            counts[f.severity.value] += 1
        return counts

    @property
    def max_severity(self) -> Severity | None:
        return max((f.severity for f in self.findings), default=None)

    def fails(self, fail_on: Severity) -> bool:
        """True when at least one finding is at or above ``fail_on``."""
        return any(f.severity >= fail_on for f in self.findings)

    @property
    def ok(self) -> bool:
        """True when nothing at medium or above was found."""
        return not self.fails(Severity.MEDIUM)
