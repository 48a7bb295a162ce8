"""Synthetic OSV records, written the way OSV's PyPI export lays them out (one ``<ID>.json`` per record)."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path


def record(id_: str, package: str, *, events=None, versions=(), aliases=(), summary="", severity=None,
           db_severity=None, withdrawn=None, ecosystem="PyPI") -> dict:
    affected = {"package": {"ecosystem": ecosystem, "name": package}}
    if events is not None:
        affected["ranges"] = [{"type": "ECOSYSTEM", "events": [{k: v} for k, v in events]}]
    if versions:
        affected["versions"] = list(versions)
    out = {"schema_version": "1.6.0", "id": id_, "modified": "2025-01-01T00:00:00Z", "summary": summary,
           "details": summary, "aliases": list(aliases), "affected": [affected]}
    if severity:
        out["severity"] = [{"type": "CVSS_V3", "score": severity}]
    if db_severity:
        out["database_specific"] = {"severity": db_severity}
    if withdrawn:
        out["withdrawn"] = withdrawn
    return out


def write_zip(path: Path, records: list[dict], extra: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for r in records:
            z.writestr(f"{r['id']}.json", json.dumps(r))
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return path


STANDARD = [
    record("GHSA-aaaa-0001", "Flask_Thing", events=[("introduced", "0"), ("fixed", "2.0.0")],
           aliases=["CVE-2024-0001", "PYSEC-2024-1"], summary="RCE in flask-thing",
           severity="CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"),
    record("PYSEC-2024-1", "flask-thing", events=[("introduced", "0"), ("fixed", "2.0.0")],
           aliases=["CVE-2024-0001", "GHSA-aaaa-0001"], summary="RCE in flask-thing (PyPA copy)"),
    record("GHSA-bbbb-0002", "lastpkg", events=[("introduced", "1.0"), ("last_affected", "1.4.2")],
           summary="last_affected form", db_severity="MODERATE"),
    record("PYSEC-2024-3", "listpkg", versions=["0.9", "1.0", "1.1"], summary="versions list only"),
    record("GHSA-cccc-0004", "twopkg", events=[("introduced", "1.0"), ("fixed", "1.2"), ("introduced", "2.0"),
                                               ("fixed", "2.1rc1")], summary="two ranges in one"),
    record("MAL-2024-0005", "evil-typo", events=[("introduced", "0")], summary="Malicious code in evil-typo"),
    record("GHSA-dddd-0006", "gone", events=[("introduced", "0")], summary="withdrawn", withdrawn="2024-05-01T00:00:00Z"),
    record("GHSA-eeee-0007", "othereco", events=[("introduced", "0")], ecosystem="npm"),
]
