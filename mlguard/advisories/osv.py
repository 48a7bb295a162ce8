"""OSV records (https://ossf.github.io/osv-schema/) reduced to what matching and reporting need."""
from __future__ import annotations

import json

from packaging.utils import canonicalize_name

from ..record import Record
from . import cvss

_DB_SEVERITY = {"CRITICAL": "critical", "HIGH": "high", "MODERATE": "medium", "MEDIUM": "medium", "LOW": "low"}
MAX_TEXT = 2000
"""Characters of a summary or details kept (the database is for matching, the advisory page has the rest)."""


class RecordError(ValueError):
    """A record that is not a usable OSV advisory."""


class Affected(Record):
    """One ``affected`` entry for a PyPI package."""

    package: str
    """PEP 503 normalised name."""
    ranges: tuple[tuple[tuple[str, str], ...], ...]
    """ECOSYSTEM ranges, each a tuple of (event kind, version) in the record's order."""
    versions: tuple[str, ...]
    """Versions listed as affected."""


class Advisory(Record):
    id: str
    aliases: tuple[str, ...]
    summary: str
    modified: str
    withdrawn: str | None
    severity: str | None
    """``critical``/``high``/``medium``/``low`` from the CVSS base score, else the database's own rating."""
    score: float | None
    """CVSS base score when a vector was given and could be computed."""
    vector: str | None
    affected: tuple[Affected, ...]
    fixed: tuple[str, ...]
    """Versions in which a fix was released, over all ranges."""

    @property
    def malicious(self) -> bool:
        """OpenSSF malicious-packages records (``MAL-*``)."""
        return self.id.startswith("MAL-") or any(a.startswith("MAL-") for a in self.aliases)


def parse(raw: bytes | str) -> Advisory:
    """Parse one OSV JSON record; raises RecordError when it is not one."""
    try:
        record = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise RecordError(f"not JSON: {exc}") from None
    if not isinstance(record, dict) or not isinstance(record.get("id"), str):
        raise RecordError("not an OSV record (no id)")
    affected = tuple(a for a in (_affected(x) for x in _list(record.get("affected"))) if a is not None)
    score, vector = _cvss(record)
    severity = cvss.severity(score) if score is not None else _db_severity(record)
    fixed = tuple(dict.fromkeys(v for a in affected for r in a.ranges for kind, v in r if kind == "fixed"))
    text = record.get("summary") or record.get("details") or ""
    return Advisory(id=record["id"], aliases=tuple(str(a) for a in _list(record.get("aliases"))),
                    summary=" ".join(str(text).split())[:MAX_TEXT], modified=str(record.get("modified", "")),
                    withdrawn=record.get("withdrawn") or None, severity=severity, score=score, vector=vector,
                    affected=affected, fixed=fixed)


def _list(value) -> list:
    return value if isinstance(value, list) else []


def _affected(entry) -> Affected | None:
    if not isinstance(entry, dict):
        return None
    package = entry.get("package") or {}
    if not isinstance(package, dict) or package.get("ecosystem") != "PyPI" or not isinstance(package.get("name"), str):
        return None
    ranges = []
    for r in _list(entry.get("ranges")):
        if isinstance(r, dict) and r.get("type") == "ECOSYSTEM":
            events = tuple((kind, str(v)) for e in _list(r.get("events")) if isinstance(e, dict)
                           for kind, v in e.items() if kind in ("introduced", "fixed", "last_affected"))
            if events:
                ranges.append(events)
    versions = tuple(str(v) for v in _list(entry.get("versions")))
    return Affected(canonicalize_name(package["name"]), tuple(ranges), versions)


def _cvss(record: dict) -> tuple[float | None, str | None]:
    """The highest computable CVSS base score among the record's (and its entries') vectors."""
    entries = _list(record.get("severity")) + [s for a in _list(record.get("affected")) if isinstance(a, dict)
                                                for s in _list(a.get("severity"))]
    best: tuple[float | None, str | None] = (None, None)
    for s in entries:
        if isinstance(s, dict) and isinstance(s.get("score"), str):
            value = cvss.score(str(s.get("type")), s["score"])
            if value is not None and (best[0] is None or value > best[0]):
                best = (value, s["score"])
    return best


def _db_severity(record: dict) -> str | None:
    sources = [record.get("database_specific")] + [a.get("database_specific") for a in _list(record.get("affected"))
                                                   if isinstance(a, dict)]
    for ds in sources:
        if isinstance(ds, dict) and isinstance(ds.get("severity"), str):
            return _DB_SEVERITY.get(ds["severity"].upper())
    return None
