"""Which versions an advisory affects, with PEP 440 ordering and OSV's range semantics.

A range is a list of events in version order: ``introduced`` opens it, ``fixed`` closes it before that
version, ``last_affected`` closes it after that version; the last event at or below a version decides.
Versions are compared as ``packaging.version.Version`` on their public part (``2.1.0+cu118`` is ``2.1.0``);
pre-releases sort before their release. Ranges are never turned into specifier sets (which treat
pre-releases differently).
"""
from __future__ import annotations

import functools

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from ..record import Record
from .osv import Affected

_ZERO = Version("0")


@functools.lru_cache(maxsize=65536)
def version(text: str) -> Version | None:
    """The public version of ``text`` (local part dropped), None when it is not PEP 440."""
    try:
        return Version(Version(text).public)
    except InvalidVersion:
        return None


def affects(entry: Affected, text: str) -> bool:
    """Whether the exact version ``text`` is affected."""
    v = version(text)
    if v is None:
        return text in entry.versions
    return any(_in_range(v, r) for r in entry.ranges) or any(version(x) == v for x in entry.versions)


def _in_range(v: Version, events: tuple[tuple[str, str], ...]) -> bool:
    parsed = [(kind, _ZERO if raw == "0" else version(raw)) for kind, raw in events]
    if any(p is None for _, p in parsed):
        parsed = [(k, p) for k, p in parsed if p is not None]  # an unparsable event cannot be placed
    parsed.sort(key=lambda e: e[1])
    affected = False
    for kind, at in parsed:
        if kind == "introduced" and v >= at:
            affected = True
        elif kind == "fixed" and v >= at:
            affected = False
        elif kind == "last_affected" and v > at:
            affected = False
    return affected


class RangeMatch(Record):
    """How an advisory meets a version range a manifest allows."""

    some: bool
    """At least one allowed version is affected."""
    every: bool
    """Every allowed version is affected (upgrading within the range cannot help)."""
    example: str | None
    """An allowed, affected version."""


def range_match(entry: Affected, specifier: str) -> RangeMatch:
    """Compare the versions ``specifier`` allows with the affected ones.

    Both sets only change at the versions the range events, the affected list and the specifier name, so
    testing each such version and one just above it (plus the extremes) decides both questions.
    """
    try:
        spec = SpecifierSet(specifier)
    except InvalidSpecifier:
        return RangeMatch(False, False, None)
    points = {_ZERO} | {v for r in entry.ranges for _, raw in r for v in [version(raw)] if v is not None}
    points |= {v for raw in entry.versions for v in [version(raw)] if v is not None}
    points |= {v for s in spec for v in [version(s.version.rstrip(".*"))] if v is not None}
    candidates = sorted(points | {_just_above(p) for p in points})
    allowed = [c for c in candidates if spec.contains(c, prereleases=bool(spec.prereleases))]
    hits = [c for c in allowed if affects(entry, str(c))]
    return RangeMatch(bool(hits), bool(allowed) and len(hits) == len(allowed), str(hits[0]) if hits else None)


def _just_above(v: Version) -> Version:
    """A final release just above ``v`` and below any version a human would publish next."""
    release = tuple(v.release) + (0,) * max(0, 6 - len(v.release))
    return Version(".".join(map(str, release + (1,))))
