"""The dependencies scanner end to end: manifests in a project tree checked against a database built by
`ml-guard db update` from synthetic OSV records (and from the real snapshot when present)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mlguard import Policy, scan_tree
from mlguard.advisories.database import update
from mlguard.config import Config
from tests.conftest import run_cli
from osv_records import STANDARD, write_zip


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "osv.sqlite"
    update(path, write_zip(tmp_path / "all.zip", STANDARD))
    return path


def scan(project, db, **policy):
    config = Config(policy=Policy(scanner_options={"dependencies": {"db": str(db)}}, **policy))
    return [f for f in scan_tree(project, config).findings if f.scanner == "dependencies"]


def test_requirements_pinned_ranges_urls_and_includes(tmp_path, db):
    project = tmp_path / "p"
    (project / "reqs").mkdir(parents=True)
    (project / "requirements.txt").write_text(
        "# app\n"
        "Flask_Thing==1.5.0  # pinned, vulnerable\n"
        "lastpkg>=1.2,<1.4\n"
        "twopkg>=3\n"
        "evil-typo\n"
        "git+https://github.com/x/y.git#egg=ydep\n"
        "-r reqs/base.txt\n")
    (project / "reqs" / "base.txt").write_text("listpkg==1.1\nsafe-pkg==1.0\n")
    found = {(f.rule_id, f.path, f.location.line, f.evidence.get("package")): f for f in scan(project, db)}
    assert set(found) == {
        ("cve-known-vulnerability", "requirements.txt", 2, "flask-thing"),
        ("cve-vulnerable-range", "requirements.txt", 3, "lastpkg"),
        ("cve-malicious-package", "requirements.txt", 5, "evil-typo"),
        ("cve-unpinned-reference", "requirements.txt", 6, "ydep"),
        ("cve-known-vulnerability", "reqs/base.txt", 1, "listpkg"),
    }
    flask = found[("cve-known-vulnerability", "requirements.txt", 2, "flask-thing")]
    # the PYSEC copy and the GHSA are one problem; the CVSS 9.8 vector makes it critical
    assert flask.severity.value == "critical" and flask.evidence["advisory"] == "GHSA-aaaa-0001"
    assert {"CVE-2024-0001", "PYSEC-2024-1"} <= set(flask.evidence["aliases"])
    assert "fixed in 2.0.0" in flask.message and "RCE in flask-thing" in flask.message
    last = found[("cve-vulnerable-range", "requirements.txt", 3, "lastpkg")]
    assert last.evidence["every_allowed_version"]
    assert last.severity.value == "medium"                       # every allowed version: the advisory's own
    assert found[("cve-malicious-package", "requirements.txt", 5, "evil-typo")].severity.value == "critical"
    listpkg = found[("cve-known-vulnerability", "reqs/base.txt", 1, "listpkg")]
    assert listpkg.severity.value == "high"                      # no score, no rating: the rule's default


def test_a_range_only_partly_affected_is_medium_with_an_example(tmp_path, db):
    project = tmp_path / "p"
    project.mkdir()
    (project / "requirements.txt").write_text("flask-thing>=1.9,<3\n")
    [f] = scan(project, db)
    assert f.rule_id == "cve-vulnerable-range" and f.severity.value == "medium"
    assert not f.evidence["every_allowed_version"] and f.evidence["example"].startswith("1.9")


def test_lock_files_and_pyproject(tmp_path, db):
    project = tmp_path / "p"
    project.mkdir()
    (project / "poetry.lock").write_text('[[package]]\nname = "flask-thing"\nversion = "1.0.0"\n\n'
                                         '[[package]]\nname = "safe"\nversion = "2.0"\n')
    (project / "Pipfile.lock").write_text(json.dumps({"_meta": {}, "default": {"evil-typo": {"version": "==0.1"}},
                                                      "develop": {}}))
    (project / "pyproject.toml").write_text('[project]\nname = "app"\nversion = "1"\ndependencies = ["twopkg==2.0"]\n')
    rules = sorted((f.path, f.rule_id) for f in scan(project, db))
    assert rules == [("Pipfile.lock", "cve-malicious-package"), ("poetry.lock", "cve-known-vulnerability"),
                     ("pyproject.toml", "cve-known-vulnerability")]


def test_includes_cannot_leave_the_scanned_tree(tmp_path, db):
    outside = tmp_path / "secret.txt"
    outside.write_text("flask-thing==1.0\n")
    project = tmp_path / "p"
    project.mkdir()
    (project / "requirements.txt").write_text(f"-r ../secret.txt\n-r {outside}\n")
    found = scan(project, db)
    assert {f.rule_id for f in found} == {"cve-manifest-malformed"}
    assert not any("flask-thing" in f.message for f in found)


def test_no_database_is_one_info_finding_per_manifest(tmp_path):
    project = tmp_path / "p"
    project.mkdir()
    (project / "requirements.txt").write_text("flask-thing==1.0\n")
    [f] = scan(project, tmp_path / "missing.sqlite")
    assert f.rule_id == "cve-db-missing" and f.severity.value == "info" and "ml-guard db update" in f.message


def test_configured_severity_beats_the_advisory(tmp_path, db):
    project = tmp_path / "p"
    project.mkdir()
    (project / "requirements.txt").write_text("flask-thing==1.0\n")
    from mlguard.findings import Severity
    [f] = scan(project, db, severity_overrides={"cve-known-vulnerability": Severity.LOW})
    assert f.severity.value == "low"


def test_cli_db_update_info_scan_and_the_earlier_spellings(tmp_path, db):
    source = tmp_path / "all.zip"
    target = tmp_path / "cli.sqlite"
    out = run_cli("db", "update", "--from", str(source), "--db", str(target))
    assert out.exit_code == 0, out.output
    assert "Imported 8 advisories" in out.output
    out = run_cli("db", "info", "--db", str(target), "--format", "json")
    assert json.loads(out.output)["records"] == 8
    out = run_cli("cve-update", str(source), "--db", str(tmp_path / "old.sqlite"))
    assert out.exit_code == 0 and (tmp_path / "old.sqlite").is_file()
    assert "records:" in run_cli("cve-info", "--db", str(target)).output
    project = tmp_path / "p"
    project.mkdir()
    (project / "requirements.txt").write_text("evil-typo==1.0\n")
    out = run_cli("scan", str(project), "--db", str(target), "--scanners", "cve")
    assert out.exit_code == 1 and "cve-malicious-package" in out.output
    bad = run_cli("db", "update", "--from", str(tmp_path / "nope.zip"), "--db", str(target))
    assert bad.exit_code == 2 and "no such file" in bad.output


def test_db_location_from_the_environment(tmp_path):
    env = {"MLGUARD_DB": str(tmp_path / "env.sqlite"), "PATH": "/usr/bin:/bin"}
    write_zip(tmp_path / "all.zip", STANDARD)
    out = subprocess.run([sys.executable, "-m", "mlguard", "db", "update", "--from", str(tmp_path / "all.zip")],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "env.sqlite").is_file()


def test_known_answers_from_the_shared_snapshot(shared_dir, tmp_path):
    db = tmp_path / "osv.sqlite"
    update(db, shared_dir / "data" / "osv" / "PyPI-all-snapshot.zip")
    project = tmp_path / "p"
    project.mkdir()
    (project / "requirements.txt").write_text("transformers==4.30.0\nascii2text==1.0\ntransformers-safe==1.0\n")
    found = scan(project, db)
    [t] = [f for f in found if "GHSA-3863-2447-669p" in (f.evidence["advisory"], *f.evidence["aliases"])]
    assert t.rule_id == "cve-known-vulnerability" and t.severity.value == "critical" and t.location.line == 1
    assert "CVE-2023-6730" in t.message and "4.36.0" in t.message
    [a] = [f for f in found if f.evidence["package"] == "ascii2text"]
    assert a.rule_id == "cve-malicious-package" and "MAL-2022-7421" in a.message and a.location.line == 2
    assert not [f for f in found if f.evidence["package"] == "transformers-safe"]
