"""Dependency manifests: every requirement checked against the local OSV database (``ml-guard db update``)."""
from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Iterable, Iterator

from ..findings import Severity
from ..sniff import Format
from .interface import Artifact, Option, ScanContext

if TYPE_CHECKING:
    from ..advisories.manifests import Dependency

_SUFFIXES = (".txt", ".in", ".toml", ".lock", ".yml", ".yaml")
"""Every manifest name ends so: other files are passed over without importing the parsers."""


class DependencyScanner:
    name = "dependencies"
    formats = frozenset({Format.TEXT, Format.JSON, Format.YAML, Format.EMPTY})
    options = {
        "db": Option("str", "", "Advisory database [default: MLGUARD_DB, else osv.sqlite in the user data folder]; "
                                "`ml-guard db update` builds it."),
        "max_manifest_size": Option("int", 16 << 20, "Manifests larger than this are reported, not parsed."),
    }

    def scan(self, artifact: Artifact, ctx: ScanContext) -> Iterator:
        if artifact.depth > 0 or not artifact.name.lower().endswith(_SUFFIXES):
            return
        from ..advisories.manifests import parser_for
        parser = parser_for(artifact.name)
        if parser is None:
            return
        opts = ctx.options(self)
        if artifact.size > opts["max_manifest_size"]:
            yield ctx.finding(artifact, "cve-file-too-large",
                              f"{artifact.size:,} bytes, over max_manifest_size ({opts['max_manifest_size']:,}); "
                              "its dependencies were not checked", evidence={"size": artifact.size})
            return
        text = bytes(artifact.buffer()).decode("utf-8", "replace")
        manifest = parser.parse(text, artifact.path, _reader(artifact))
        for problem in manifest.problems:
            yield ctx.finding(problem.source, "cve-manifest-malformed", problem.message, line=problem.line,
                              key=f"{problem.line}:{problem.message[:80]}")
        from ..advisories.database import DatabaseError, default_path
        try:
            db = _open(opts["db"] or str(default_path()))
        except DatabaseError as exc:
            yield ctx.finding(artifact, "cve-db-missing", f"dependencies not checked: {exc}")
            return
        for dep in manifest.dependencies:
            if not dep.constraint:
                yield from _check(ctx, db, dep)


_databases: dict = {}
_lock = threading.Lock()


def _open(path: str):
    """One open database per path and process (scans run files in parallel threads)."""
    from ..advisories.database import Database
    key = os.path.abspath(path)
    with _lock:
        if key not in _databases or _stale(_databases[key]):
            _databases[key] = (Database(path), _mtime(key))
        return _databases[key][0]


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def _stale(entry) -> bool:
    db, mtime = entry
    return _mtime(str(db.path.absolute())) != mtime


def _reader(artifact: Artifact):
    """Includes are read only inside the scanned tree."""
    from ..advisories.manifests import tree_reader
    if artifact.fs_path is None or not artifact.fs_path.endswith(artifact.path):
        return None
    return tree_reader(artifact.fs_path[:len(artifact.fs_path) - len(artifact.path)] or ".")


def _check(ctx: ScanContext, db, dep: Dependency) -> Iterable:
    shown = f"{dep.name}{dep.specifier}" if not dep.url else f"{dep.name} @ {dep.url}".lstrip(" @")
    if dep.url:
        checked = "" if dep.version is None else f"; only its version {dep.version} could be checked"
        yield ctx.finding(dep.source, "cve-unpinned-reference",
                          f"{shown}: a URL, VCS or path reference; what it installs cannot be checked against "
                          f"advisories{checked}", line=dep.line, snippet=shown,
                          evidence={"package": dep.normalized, "url": dep.url}, key=dep.url)
        if dep.version is None or not dep.normalized:
            return
    from ..advisories.matching import affects, range_match
    pinned = dep.version
    hits = []
    for advisory, entry in db.for_package(dep.normalized):
        if pinned is not None:
            if affects(entry, pinned):
                hits.append((advisory, None))
        else:
            match = range_match(entry, dep.specifier)
            if match.some:
                hits.append((advisory, match))
    for group in _merge_aliases(hits):
        yield _finding(ctx, dep, shown, group)


def _merge_aliases(hits: list) -> list[list]:
    """Advisories that name each other (a PYSEC and its GHSA) are one problem: group them."""
    groups: list[tuple[set, list]] = []
    for advisory, match in hits:
        names = {advisory.id, *advisory.aliases}
        for ids, members in groups:
            if ids & names:
                ids |= names
                members.append((advisory, match))
                break
        else:
            groups.append((names, [(advisory, match)]))
    return [members for _, members in groups]


def _finding(ctx: ScanContext, dep: Dependency, shown: str, group: list):
    lead = max(group, key=lambda h: (h[0].score or 0, h[0].severity is not None, h[0].id))[0]
    ids = sorted({i for a, _ in group for i in (a.id, *a.aliases)} - {lead.id})
    fixed = sorted({v for a, _ in group for v in a.fixed})
    also = f" ({', '.join(ids)})" if ids else ""
    evidence = {"package": dep.normalized, "advisory": lead.id, "aliases": ids, "fixed": fixed,
                "specifier": dep.specifier, "version": dep.version, "score": lead.score, "vector": lead.vector}
    key = f"{dep.normalized}:{lead.id}"
    if any(a.malicious for a, _ in group):
        return ctx.finding(dep.source, "cve-malicious-package",
                           f"{shown}: malicious package (advisory {lead.id}{also}): {lead.summary}",
                           line=dep.line, snippet=shown, evidence=evidence, key=key)
    severities = [Severity(a.severity) for a, _ in group if a.severity]
    severity = max(severities) if severities else None
    fix = f"; fixed in {', '.join(fixed)}" if fixed else "; no fixed version published"
    match = group[0][1]
    if match is None:
        return ctx.finding(dep.source, "cve-known-vulnerability", f"{shown}: {lead.id}{also}: {lead.summary}{fix}",
                           line=dep.line, snippet=shown, evidence=evidence, key=key, severity=severity)
    scope = ("every version it allows is affected" if match.every
             else f"some versions it allows are affected, e.g. {match.example}")
    evidence.update(every_allowed_version=match.every, example=match.example)
    return ctx.finding(dep.source, "cve-vulnerable-range", f"{shown}: {scope}: {lead.id}{also}: {lead.summary}{fix}",
                       line=dep.line, snippet=shown, evidence=evidence, key=key,
                       severity=severity if match.every else None)


SCANNER = DependencyScanner()
