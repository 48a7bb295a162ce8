"""Baselines: accept the findings a project has today and report only new ones.

``ml-guard baseline create PATH -o .ml-guard-baseline.json`` writes the fingerprint of every finding (all
scanners) with its rule id, path and redacted snippet, never a secret; ``ml-guard scan PATH --baseline FILE``
drops the findings whose fingerprint is listed. A fingerprint depends on the rule, the file and a
scanner-chosen key (for secrets a keyed hash of the secret), not on the line: a baselined secret stays
baselined when lines move, and is reported again when it changes or moves to another file.
"""
from __future__ import annotations

import json
import os

from .findings import ScanResult
from .record import replace

FORMAT = "ml-guard-baseline"
VERSION = 1


class BaselineError(ValueError):
    """A baseline file that cannot be read, worded for the user."""


def create(result: ScanResult) -> str:
    """The baseline of ``result`` as JSON text, one entry per fingerprint, sorted (stable diffs)."""
    entries = {f.fingerprint: {"fingerprint": f.fingerprint, "rule_id": f.rule_id, "path": f.path,
                               "snippet": f.snippet} for f in result.findings}
    ordered = sorted(entries.values(), key=lambda e: (e["path"], e["rule_id"], e["fingerprint"]))
    return json.dumps({"format": FORMAT, "version": VERSION, "findings": ordered}, indent=2,
                      ensure_ascii=False) + "\n"


def load(path: str | os.PathLike) -> frozenset[str]:
    """The fingerprints a baseline file accepts."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.loads(f.read())
    except OSError as exc:
        raise BaselineError(f"{path}: cannot read baseline: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise BaselineError(f"{path}: not a baseline (invalid JSON: {exc})") from None
    entries = data.get("findings") if isinstance(data, dict) and data.get("format") == FORMAT else None
    if not isinstance(entries, list) or not all(isinstance(e, dict) and isinstance(e.get("fingerprint"), str)
                                                for e in entries):
        raise BaselineError(f"{path}: not an ml-guard baseline (create one with `ml-guard baseline create`)")
    if data.get("version") != VERSION:
        raise BaselineError(f"{path}: baseline version {data.get('version')!r} is not supported "
                            f"(expected {VERSION})")
    return frozenset(e["fingerprint"] for e in entries)


def apply(result: ScanResult, fingerprints: frozenset[str]) -> tuple[ScanResult, int]:
    """``result`` without the baselined findings, and how many were dropped."""
    kept = tuple(f for f in result.findings if f.fingerprint not in fingerprints)
    return replace(result, findings=kept), len(result.findings) - len(kept)
