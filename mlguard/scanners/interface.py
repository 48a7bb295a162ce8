"""What every scanner is, what it is given, and how it reports.

A scanner is one module in this package that defines ``SCANNER``, an object with:

* ``name``: the scanner's public name (used in ``--scanners``, ``.ml-guard.yml`` and rule ids);
* ``formats``: the sniffed formats it examines;
* ``options``: its section of ``.ml-guard.yml`` (name -> :class:`Option`);
* ``scan(artifact, ctx)``: yields findings made with ``ctx.finding(...)``.

Adding a format is adding a module here (and its kernel and catalog rules): it is discovered automatically.
"""
from __future__ import annotations

import io
import mmap
from typing import Any, Callable, ClassVar, Iterable, Mapping, Protocol

from ..findings import Finding, Location, ScanError, Severity, fingerprint
from ..policy import Policy
from ..record import Record
from ..rules import Catalog
from ..sniff import Sniffed


class Option(Record):
    """One key of a scanner's configuration section."""

    kind: str
    """``int``, ``bool``, ``str`` or ``str-list``."""
    default: Any
    help: str


class Artifact:
    """One thing to scan: a file on disk (``depth == 0``) or bytes taken out of a container."""

    def __init__(self, path: str, sniffed: Sniffed, size: int, *, file=None, data: bytes | None = None,
                 member: str | None = None, depth: int = 0, fs_path: str | None = None):
        self.path = path
        """File path relative to the scan root."""
        self.sniffed = sniffed
        """Format decided from the content."""
        self.size = size
        """Size in bytes."""
        self.member = member
        """Archive member path (``!``-joined when nested), None for the file itself."""
        self.depth = depth
        """Container nesting depth: 0 for the file itself."""
        self.fs_path = fs_path
        """Path on disk (files only), for scanners that look at neighbouring files."""
        self.derived: dict[str, Any] = {}
        """Values computed from the content, shared by the scanners of this artifact (a parsed notebook)."""
        self._file = file
        self._data = data
        self._map: mmap.mmap | None = None

    @property
    def name(self) -> str:
        """The artifact's own name: the member's last component, or the file name."""
        return (self.member or self.path).rsplit("!", 1)[-1].rsplit("/", 1)[-1]

    def buffer(self):
        """The whole content as a bytes-like object (memory-mapped for files, never copied)."""
        if self._data is not None:
            return self._data
        if self._map is None:
            self._map = b"" if self.size == 0 else mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        return self._map

    def stream(self):
        """A seekable binary stream over the content, positioned at 0."""
        if self._data is not None:
            return io.BytesIO(self._data)
        self._file.seek(0)
        return self._file

    def close(self) -> None:
        if isinstance(self._map, mmap.mmap):
            self._map.close()
        self._map = None


class ScanContext:
    """Everything a scanner may use while scanning one top-level file."""

    def __init__(self, policy: Policy, catalog: Catalog,
                 scan_nested: Callable[["Artifact", "ScanContext"], list[Finding]]):
        self.policy = policy
        self.catalog = catalog
        self._scan_nested = scan_nested
        self.decompressed_bytes = 0
        """Bytes taken out of containers so far for this top-level file (bounded by the archive scanner)."""
        self.errors: list[ScanError] = []
        """Internal failures met while scanning this file."""
        self.imports: set[str] = set()
        """Every pickle global the scan met (``module.name`` as the policy normalises it): the runtime
        guard lets exactly these, plus the allowlist, through ``find_class`` while the file loads."""

    def options(self, scanner: "Scanner") -> Mapping[str, Any]:
        """The scanner's configuration: defaults overlaid with ``.ml-guard.yml``."""
        given = self.policy.scanner_options.get(scanner.name, {})
        return {key: given.get(key, opt.default) for key, opt in scanner.options.items()}

    def finding(self, where: Artifact | str, rule_id: str, message: str, *, offset: int | None = None,
                line: int | None = None, column: int | None = None, snippet: str | None = None,
                evidence: Mapping[str, Any] | None = None, key: str = "",
                severity: Severity | None = None) -> Finding | None:
        """Make a finding for ``rule_id`` with the policy's severity; None when the policy disables the rule.

        ``severity``: this finding's own severity (e.g. from an advisory's CVSS score), used instead of the
        rule's default unless the configuration overrides the rule's severity.

        ``where`` is the artifact, or just a display path for files that could not be opened.

        ``key`` distinguishes findings of one rule in one file for the fingerprint (e.g. ``os.system``);
        leave it empty when there is one finding of the rule per file.
        """
        path, member = (where, None) if isinstance(where, str) else (where.path, where.member)
        rule = self.catalog[rule_id]
        configured = self.policy.severity_of(rule)
        if configured is None:
            return None
        if severity is None or rule.id in self.policy.severity_overrides:
            severity = configured
        return Finding(
            rule_id=rule.id, severity=severity, scanner=rule.scanner, message=message, path=path,
            location=Location(line=line, column=column, offset=offset, member=member),
            snippet=snippet, evidence=dict(evidence or {}), fingerprint=fingerprint(rule.id, path, member, key),
        )

    def scan_nested(self, child: Artifact) -> list[Finding]:
        """Scan bytes found inside ``child``'s container with every scanner that takes their format."""
        return self._scan_nested(child, self)


class Scanner(Protocol):
    name: ClassVar[str]
    formats: ClassVar[frozenset]
    options: ClassVar[Mapping[str, Option]]

    def scan(self, artifact: Artifact, ctx: ScanContext) -> Iterable[Finding | None]:
        """Examine one artifact; ``None`` items (disabled rules) are dropped by the caller."""
        ...

