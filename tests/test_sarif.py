"""``--format sarif``: schema-valid SARIF 2.1.0 that GitHub code scanning accepts, built from real scans."""
import io
import json
import zipfile
from mlguard.record import replace
from pathlib import Path

import pytest

import mlguard
from mlguard.demo import write_demo
from mlguard.findings import ScanError, Severity
from mlguard.report import REPORTERS
from mlguard.report.interface import RenderOptions
from mlguard.report.sarif import MAX_RESULTS, MAX_RESULTS_PER_RULE
from mlguard.rules import catalog
from tests.conftest import run_cli
from conftest import Exploit

LEVELS = {"critical": "error", "high": "error", "medium": "warning", "low": "note", "info": "note"}


@pytest.fixture
def project(tmp_path):
    """The demo project, plus a nested archive member and a manifest finding with a line number."""
    root = tmp_path / "project"
    write_demo(root)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("inner/backdoored.pt", (root / "models" / "backdoored.pt").read_bytes())
    (root / "bundle.zip").write_bytes(buf.getvalue())
    (root / "requirements-dev.txt").write_text("numpy==1.26.0\n-r missing.txt\n")
    return root


def render(result) -> str:
    return REPORTERS["sarif"].render(result, RenderOptions())


def sarif_of(root):
    result = mlguard.scan_tree(root)
    return result, json.loads(render(result))


def validate(shared_dir, log):
    from jsonschema.validators import validator_for

    schema = json.loads((shared_dir / "schemas" / "sarif-schema-2.1.0.json").read_text())
    validator = validator_for(schema)  # the schema declares draft-04 (and `id`, not `$id`)
    validator.check_schema(schema)
    validator(schema, format_checker=validator.FORMAT_CHECKER).validate(log)


def test_valid_against_official_schema(shared_dir, project):
    result, log = sarif_of(project)
    validate(shared_dir, log)
    assert log["version"] == "2.1.0" and len(log["runs"]) == 1
    assert len(log["runs"][0]["results"]) == len(result.findings) > 0


def test_driver_rules_are_the_whole_catalog(project):
    driver = sarif_of(project)[1]["runs"][0]["tool"]["driver"]
    assert driver["name"] == "ml-guard" and driver["version"] == mlguard.__version__
    assert driver["informationUri"].startswith("https://")
    rules = {r["id"]: r for r in driver["rules"]}
    assert list(rules) == [r.id for r in catalog()]
    for rule in catalog():
        sarif = rules[rule.id]
        assert sarif["name"] == "".join(p.capitalize() for p in rule.id.split("-"))
        assert sarif["shortDescription"]["text"] == rule.title
        assert sarif["fullDescription"]["text"] == rule.description
        assert rule.remediation in sarif["help"]["text"] and f"{rule.id}: {{severity: low}}" in sarif["help"]["text"]
        assert ".ml-guard.yml" in sarif["help"]["markdown"]
        assert sarif["defaultConfiguration"]["level"] == LEVELS[rule.severity.value]
        props = sarif["properties"]
        assert props["precision"] in {"very-high", "high", "medium", "low"}
        assert props["tags"][0] == "security" and set(rule.tags) <= set(props["tags"])
        assert len(props["tags"]) == len(set(props["tags"])) <= 10
        if rule.cwe:
            assert f"external/cwe/{rule.cwe.lower()}" in props["tags"]
        assert isinstance(props["security-severity"], str) and 0.0 <= float(props["security-severity"]) <= 10.0
    assert rules["pickle-dangerous-global"]["properties"]["security-severity"] == "9.5"
    assert "external/cwe/cwe-502" in rules["pickle-dangerous-global"]["properties"]["tags"]
    assert rules["format-extension-mismatch"]["properties"]["security-severity"] == "5.5"


def test_results_follow_the_findings(project):
    result, log = sarif_of(project)
    run = log["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert [r["ruleId"] for r in run["results"]] == [f.rule_id for f in result.findings]
    for sarif, finding in zip(run["results"], result.findings):
        assert rules[sarif["ruleIndex"]]["id"] == sarif["ruleId"]
        assert sarif["level"] == LEVELS[finding.severity.value]
        assert sarif["message"]["text"].startswith(finding.message)
        if finding.snippet:
            assert finding.snippet in sarif["message"]["text"]
        assert sarif["partialFingerprints"] == {"mlguardFingerprint/v1": finding.fingerprint}
        assert sarif["properties"]["severity"] == finding.severity.value
        assert sarif["properties"]["evidence"] == dict(finding.evidence)
    assert run["invocations"] == [{"executionSuccessful": True, "toolExecutionNotifications": []}]
    assert run["originalUriBaseIds"]["%SRCROOT%"]["uri"] == project.as_uri() + "/"


def test_locations(project):
    result, log = sarif_of(project)
    run = log["runs"][0]
    by_uri = {}
    for r in run["results"]:
        physical = r["locations"][0]["physicalLocation"]
        assert physical["artifactLocation"]["uriBaseId"] == "%SRCROOT%"
        by_uri.setdefault(physical["artifactLocation"]["uri"], []).append(r)
    assert all(not uri.startswith(("/", "file:")) and "\\" not in uri for uri in by_uri)

    [text] = [r for r in by_uri["requirements-dev.txt"] if r["ruleId"] == "cve-manifest-malformed"]
    assert text["locations"][0]["physicalLocation"]["region"] == {"startLine": 2}

    [binary] = by_uri["models/classifier.pkl"]
    offset = next(f.location.offset for f in result.findings if f.path == "models/classifier.pkl")
    assert binary["locations"][0]["physicalLocation"]["region"] == {"byteOffset": offset}

    [member] = by_uri["models/backdoored.pt"]
    location = member["locations"][0]
    assert "region" not in location["physicalLocation"]  # the offset is inside the member, not the file
    assert location["logicalLocations"] == [{"name": "backdoored/data.pkl",
                                             "fullyQualifiedName": "models/backdoored.pt!backdoored/data.pkl"}]
    assert "backdoored/data.pkl@0x" in member["message"]["text"]
    assert member["properties"]["member"] == "backdoored/data.pkl" and member["properties"]["offset"] > 0

    [nested] = by_uri["bundle.zip"]
    assert nested["properties"]["member"] == "inner/backdoored.pt!backdoored/data.pkl"
    assert "inner/backdoored.pt!backdoored/data.pkl" in nested["message"]["text"]


def test_torch_checkpoint_member_and_uri_encoding(shared_dir, tmp_path):
    torch = pytest.importorskip("torch")
    (tmp_path / "models").mkdir()
    torch.save({"w": torch.zeros(2), "hook": Exploit()}, tmp_path / "models" / "evil model#1.pt")
    log = sarif_of(tmp_path)[1]
    validate(shared_dir, log)
    [result] = [r for r in log["runs"][0]["results"] if r["ruleId"] == "pickle-dangerous-global"]
    assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "models/evil%20model%231.pt"
    assert result["properties"]["member"].endswith("/data.pkl")
    assert result["properties"]["evidence"]["name"] == "system"


def test_output_is_byte_identical_across_runs(project):
    first, second = render(mlguard.scan_tree(project)), render(mlguard.scan_tree(project))
    assert first == second
    assert '"startTimeUtc"' not in first and '"endTimeUtc"' not in first


def test_policy_overrides_set_level_and_security_severity(project):
    (project / ".ml-guard.yml").write_text("rules:\n  pickle-dangerous-global: {severity: low}\n")
    run = sarif_of(project)[1]["runs"][0]
    results = [r for r in run["results"] if r["ruleId"] == "pickle-dangerous-global"]
    assert results and {r["level"] for r in results} == {"note"}
    rule = run["tool"]["driver"]["rules"][results[0]["ruleIndex"]]
    assert rule["properties"]["security-severity"] == "3.0"  # what GitHub ranks the alert by
    assert rule["defaultConfiguration"]["level"] == "error"  # the catalog default


def test_scan_errors_become_notifications(shared_dir, project):
    result = replace(mlguard.scan_tree(project), errors=(ScanError("models/classifier.pkl", "kernel crashed"),))
    log = json.loads(render(result))
    validate(shared_dir, log)
    [invocation] = log["runs"][0]["invocations"]
    assert invocation["executionSuccessful"] is False
    [note] = invocation["toolExecutionNotifications"]
    assert note["level"] == "error" and "kernel crashed" in note["message"]["text"]
    assert note["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "models/classifier.pkl"


def test_results_are_capped_for_github(shared_dir, project):
    real = mlguard.scan_tree(project)
    template = real.findings[0]

    def many(rule_id, severity, count):
        return [replace(template, rule_id=rule_id, severity=severity, path=f"{rule_id}/{i:05}",
                        fingerprint=f"{rule_id}-{i}") for i in range(count)]

    findings = (many("pickle-dangerous-global", Severity.CRITICAL, MAX_RESULTS_PER_RULE)
                + many("format-extension-mismatch", Severity.MEDIUM, MAX_RESULTS_PER_RULE + 10)
                + many("npy-object-array", Severity.LOW, MAX_RESULTS_PER_RULE)
                + many("pickle-multiple-streams", Severity.LOW, MAX_RESULTS_PER_RULE)
                + many("cve-db-missing", Severity.INFO, MAX_RESULTS_PER_RULE)
                + many("format-unrecognized", Severity.INFO, MAX_RESULTS_PER_RULE))
    findings = tuple(sorted(findings, key=lambda f: f.sort_key()))
    log = json.loads(render(replace(real, findings=findings)))
    validate(shared_dir, log)
    run = log["runs"][0]
    kept = [r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in run["results"]]
    assert len(kept) == MAX_RESULTS
    assert kept == sorted(kept)  # still in the ScanResult's order
    counts = {rule: sum(r["ruleId"] == rule for r in run["results"]) for rule in {r["ruleId"] for r in run["results"]}}
    assert counts == {rule: MAX_RESULTS_PER_RULE for rule in (  # the worst first; the first info rule fills up
        "pickle-dangerous-global", "format-extension-mismatch", "npy-object-array", "pickle-multiple-streams",
        "cve-db-missing")}
    notes = run["invocations"][0]["toolExecutionNotifications"]
    assert [n["message"]["text"].split()[:2] for n in notes] == [["10", "format-extension-mismatch"],
                                                                 [str(MAX_RESULTS_PER_RULE), "format-unrecognized"]]
    assert all(n["level"] == "warning" for n in notes)


def test_cli_writes_sarif_and_keeps_exit_code(shared_dir, project, tmp_path):
    out = tmp_path / "out.sarif"
    result = run_cli("scan", str(project), "--format", "sarif", "-o", str(out))
    assert result.exit_code == 1
    log = json.loads(out.read_text(encoding="utf-8"))
    validate(shared_dir, log)
    assert any(r["ruleId"] == "pickle-dangerous-global" for r in log["runs"][0]["results"])

    clean = project / "models" / "clean_state.pkl"
    result = run_cli("scan", str(clean), "--format", "sarif")
    assert result.exit_code == 0
    log = json.loads(result.output)
    assert log["runs"][0]["results"] == []
    assert log["runs"][0]["originalUriBaseIds"]["%SRCROOT%"]["uri"] == clean.parent.as_uri() + "/"


def test_cli_several_paths_are_relative_to_the_working_directory(project, monkeypatch):
    monkeypatch.chdir(project)
    result = run_cli("scan", "models/classifier.pkl", "models/backdoored.pt", "--format", "sarif")
    assert result.exit_code == 1
    run = json.loads(result.output)["runs"][0]
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in run["results"]}
    assert uris == {"models/classifier.pkl", "models/backdoored.pt"}
    assert run["originalUriBaseIds"]["%SRCROOT%"]["uri"] == Path.cwd().as_uri() + "/"


def test_a_subfolder_scan_reports_paths_from_the_working_directory(tmp_path, monkeypatch):
    """GitHub resolves result URIs against the repository root: `ml-guard scan models` run from the checkout
    must say `models/x.pkl`."""
    write_demo(tmp_path)
    monkeypatch.chdir(tmp_path)
    sarif = json.loads(REPORTERS["sarif"].render(mlguard.scan_tree("models"), RenderOptions()))
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in sarif["runs"][0]["results"]}
    assert "models/classifier.pkl" in uris and all(u.startswith("models/") for u in uris)
    assert sarif["runs"][0]["originalUriBaseIds"]["%SRCROOT%"]["uri"] == tmp_path.as_uri() + "/"
