"""``--format sarif``: SARIF 2.1.0 for GitHub code scanning and other SARIF consumers (``docs/ci.md``).

One run; ``tool.driver.rules`` is the whole rule catalog. A result's location is the scanned file, relative to
``%SRCROOT%`` (the scan root); a finding inside an archive keeps the outer file as its physical location and
names the member in the message, a logical location and ``properties.member``. The output is deterministic:
no timestamps, rules in catalog order, results in the ScanResult's order.
"""
from __future__ import annotations

import json
import os
import posixpath
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from .. import __version__
from ..findings import Finding, ScanResult, Severity
from .interface import RenderOptions

if TYPE_CHECKING:
    from ..rules import Rule

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://github.com/ml-guard/ml-guard"
SRCROOT = "%SRCROOT%"
MAX_RESULTS = 5_000
"""GitHub stores at most 5,000 results per run (and rejects more than 25,000); the worst are kept."""
MAX_RESULTS_PER_RULE = 1_000
"""So that one noisy rule cannot crowd out the others."""

LEVELS = {Severity.CRITICAL: "error", Severity.HIGH: "error", Severity.MEDIUM: "warning", Severity.LOW: "note",
          Severity.INFO: "note"}
SECURITY_SEVERITY = {Severity.CRITICAL: "9.5", Severity.HIGH: "8.0", Severity.MEDIUM: "5.5", Severity.LOW: "3.0",
                     Severity.INFO: "0.0"}
"""GitHub's bands: over 9.0 critical, 7.0-8.9 high, 4.0-6.9 medium, 0.1-3.9 low."""


def _rule(rule: Rule, severity: Severity) -> dict:
    """The reportingDescriptor of one catalog rule; ``severity`` sets its security-severity."""
    override = f"rules:\n  {rule.id}: {{severity: low}}   # or {{disabled: true}}"
    tags = ["security", *rule.tags] + ([f"external/cwe/{rule.cwe.lower()}"] if rule.cwe else [])
    return {
        "id": rule.id,
        "name": "".join(part.capitalize() for part in rule.id.split("-")),
        "shortDescription": {"text": rule.title},
        "fullDescription": {"text": rule.description},
        "help": {
            "text": f"{rule.description}\n\nRemediation: {rule.remediation}\n\nOverride in .ml-guard.yml:\n{override}",
            "markdown": f"{rule.description}\n\n**Remediation:** {rule.remediation}\n\n"
                        f"Override in `.ml-guard.yml`:\n\n```yaml\n{override}\n```",
        },
        "helpUri": f"{INFORMATION_URI}/blob/main/docs/rules.md#{rule.id}",
        "defaultConfiguration": {"level": LEVELS[rule.severity]},
        "properties": {
            "security-severity": SECURITY_SEVERITY[severity],
            "tags": list(dict.fromkeys(tags)),
            "precision": rule.precision,
        },
    }


def _artifact(path: str, prefix: str) -> dict:
    """artifactLocation of a finding path: a URI reference relative to %SRCROOT%, or a file URI if absolute."""
    path = path.replace(os.sep, "/")
    if os.path.isabs(path):
        return {"uri": Path(path).as_uri()}
    return {"uri": quote(posixpath.normpath(posixpath.join(prefix, path)), safe="/", errors="surrogateescape"),
            "uriBaseId": SRCROOT}


def _source_root(root: str) -> tuple[str, str]:
    """File URI (ending in ``/``) of %SRCROOT%, and the prefix that turns finding paths (relative to the scan
    root) into paths relative to it. %SRCROOT% is the working directory when the scan root lies inside it:
    GitHub resolves result URIs against the repository root and ignores ``originalUriBaseIds``, so a scan of
    ``models/`` run from the checkout must report ``models/x.pt``, not ``x.pt``."""
    given = Path(root)
    # Several roots were merged into one result (root is their names joined): paths are relative to the cwd.
    base = Path(os.path.abspath(given if given.is_dir() else given.parent if given.is_file() else Path.cwd()))
    cwd = Path.cwd()
    prefix = ""
    if cwd in base.parents:
        prefix, base = base.relative_to(cwd).as_posix(), cwd
    uri = base.as_uri()
    return (uri if uri.endswith("/") else uri + "/"), prefix


def _result(finding: Finding, rule_index: int, prefix: str) -> dict:
    loc = finding.location
    physical = {"artifactLocation": _artifact(finding.path, prefix)}
    location: dict = {"physicalLocation": physical}
    lines = [finding.message]
    properties = {"severity": finding.severity.value, "scanner": finding.scanner, "evidence": dict(finding.evidence)}
    if loc.member:
        # Positions are inside the member, not the file: they go in the message and properties, not a region.
        lines.append(f"In archive member {loc.describe()}")
        location["logicalLocations"] = [{"name": loc.member,
                                          "fullyQualifiedName": f"{physical['artifactLocation']['uri']}!{loc.member}"}]
        properties["member"] = loc.member
        if loc.offset is not None:
            properties["offset"] = loc.offset
        if loc.line is not None:
            properties["line"] = loc.line
    elif loc.line is not None:
        physical["region"] = {"startLine": loc.line, **({"startColumn": loc.column} if loc.column else {})}
    elif loc.offset is not None:
        physical["region"] = {"byteOffset": loc.offset}
    if finding.snippet:
        lines.append(f"Snippet: {finding.snippet}")
    return {
        "ruleId": finding.rule_id,
        "ruleIndex": rule_index,
        "level": LEVELS[finding.severity],
        "message": {"text": "\n".join(lines)},
        "locations": [location],
        "partialFingerprints": {"mlguardFingerprint/v1": finding.fingerprint},
        "properties": properties,
    }


def _within_limits(findings: tuple[Finding, ...]) -> tuple[list[Finding], Counter]:
    """The findings kept (worst first up to the caps, then in their original order) and the count left out by rule."""
    kept: set[int] = set()
    per_rule: Counter = Counter()
    dropped: Counter = Counter()
    for i in sorted(range(len(findings)), key=lambda i: (-findings[i].severity.rank, i)):
        rule_id = findings[i].rule_id
        if len(kept) < MAX_RESULTS and per_rule[rule_id] < MAX_RESULTS_PER_RULE:
            kept.add(i)
            per_rule[rule_id] += 1
        else:
            dropped[rule_id] += 1
    return [f for i, f in enumerate(findings) if i in kept], dropped


def as_dict(result: ScanResult) -> dict:
    """The SARIF log as plain data."""
    from ..rules import catalog  # on use, not at import: the CLI imports every reporter at start-up

    rules = list(catalog())
    index = {rule.id: i for i, rule in enumerate(rules)}
    findings, dropped = _within_limits(result.findings)
    root_uri, prefix = _source_root(result.root)
    worst: dict[str, Severity] = {}
    for f in findings:
        worst[f.rule_id] = max(worst.get(f.rule_id, f.severity), f.severity)
    notifications = [
        {"level": "error", "message": {"text": f"{error.path}: {error.message}"},
         "locations": [{"physicalLocation": {"artifactLocation": _artifact(error.path, prefix)}}]}
        for error in result.errors
    ] + [
        {"level": "warning",
         "message": {"text": f"{count} {rule_id} result(s) left out: SARIF output keeps at most {MAX_RESULTS} "
                             f"results, {MAX_RESULTS_PER_RULE} per rule (GitHub code scanning limits); "
                             "use --format json for all of them."}}
        for rule_id, count in sorted(dropped.items())
    ]
    return {
        "$schema": SCHEMA_URI,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "ml-guard", "version": __version__,
                "informationUri": INFORMATION_URI,
                "rules": [_rule(rule, worst.get(rule.id, rule.severity)) for rule in rules],
            }},
            "invocations": [{"executionSuccessful": not result.errors, "toolExecutionNotifications": notifications}],
            "originalUriBaseIds": {SRCROOT: {"uri": root_uri,
                                             "description": {"text": "The folder result paths are relative to."}}},
            "columnKind": "unicodeCodePoints",
            "results": [_result(f, index[f.rule_id], prefix) for f in findings],
            "properties": {"filesScanned": result.files_scanned, "engine": result.engine},
        }],
    }


class SarifReporter:
    name = "sarif"

    def render(self, result: ScanResult, options: RenderOptions) -> str:
        return json.dumps(as_dict(result), indent=2, ensure_ascii=False) + "\n"


REPORTER = SarifReporter()
