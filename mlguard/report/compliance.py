"""Compliance evidence: a ScanResult mapped onto one standard's controls (``rules/compliance.yaml``).

The evidence is plain data; its canonical JSON (sorted keys, no whitespace, UTF-8) is what the PDF and HTML
renderings name by SHA-256, so a reader can check that a rendering belongs to a given evidence file.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import time

from .. import __version__
from ..findings import Finding, ScanResult
from ..policy import Policy
from ..rules import catalog, load_data


@functools.lru_cache(maxsize=None)
def _mapping() -> dict:
    return load_data("compliance.yaml")


def standards() -> dict[str, str]:
    """Standard id -> title."""
    return {key: s["title"] for key, s in _mapping()["standards"].items()}


def evidence(result: ScanResult, standard: str, policy: Policy) -> dict:
    """Per-control evidence for ``standard`` from ``result``, judged with ``policy.fail_on``."""
    spec = _mapping()["standards"][standard]
    rules = list(catalog())
    ran = {r.scanner for r in rules if r.scanner == "core" or policy.runs(r.scanner)}
    controls = []
    for control in spec["controls"]:
        tags = set(control["tags"])
        related = sorted(r.id for r in rules if tags & set(r.tags))
        assessed = sorted({r.scanner for r in rules if r.id in related and r.scanner in ran})
        found = [f for f in result.findings if f.rule_id in related]
        failing = [f for f in found if f.severity >= policy.fail_on]
        status = ("not assessed" if not assessed else "findings" if failing
                  else "observations" if found else "no findings")
        controls.append({"id": control["id"], "title": control["title"], "status": status, "rules": related,
                         "scanners": assessed, "claim": control["claim"], "limits": control["limits"],
                         "findings": [_cite(f) for f in found]})
    return {
        "standard": standard, "title": spec["title"], "caveat": " ".join(_mapping()["caveat"].split()),
        "tool": {"name": "ml-guard", "version": __version__, "engine": result.engine},
        "generated": _now(),
        "scan": {"root": result.root, "files_scanned": result.files_scanned, "fail_on": policy.fail_on.value,
                 "summary": result.summary, "errors": [e.to_dict() for e in result.errors]},
        "verdict": "fail" if result.fails(policy.fail_on) else "pass",
        "controls": controls,
        "findings": [{**f.to_dict(), "where": f.location.describe()} for f in result.findings],
    }


def _cite(f: Finding) -> dict:
    return {"rule_id": f.rule_id, "severity": f.severity.value, "path": f.path, "where": f.location.describe(),
            "message": f.message, "fingerprint": f.fingerprint}


def _now() -> str:
    """UTC now, or ``SOURCE_DATE_EPOCH`` for reproducible evidence."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    moment = time.gmtime(int(epoch)) if epoch and epoch.isdigit() else time.gmtime()
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", moment)


def canonical(data: dict) -> bytes:
    """The canonical JSON bytes of the evidence."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def digest(data: dict) -> str:
    return hashlib.sha256(canonical(data)).hexdigest()


def render(data: dict, fmt: str) -> bytes:
    """``json`` (the canonical bytes), ``html`` or ``pdf``."""
    if fmt == "json":
        return canonical(data)
    if fmt == "html":
        from .compliance_html import render_html
        return render_html(data, digest(data)).encode("utf-8")
    from .compliance_pdf import render_pdf
    return render_pdf(data, digest(data))

